"""Every kopf handler of the operator, registered in one registry: what ``__main__`` runs.

The handlers live by resource (``dataset_handlers``, ``training_handlers``,
``serving_handlers``) over the steps they share (``reconcile``, and ``runs`` for
the two resources that run a Job); this module only puts them together.
"""

from __future__ import annotations

from typing import Any

import kopf

from autovision_operator import dataset_handlers, serving_handlers, training_handlers
from autovision_operator.config import OperatorConfig
from autovision_operator.kube import Kube, connection_info, load_configuration
from autovision_operator.reconcile import Context


def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials, from the same source as the handlers' client (service account or kubeconfig)."""
    return connection_info(load_configuration())


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """All handlers, registered in a fresh registry with the configured poll interval.

    A registry per call, rather than decorators at import, lets the interval come
    from the configuration and lets tests run exactly the operator ``main`` runs.
    """
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def connect(memo: kopf.Memo, **_: Any) -> None:
        """Create the API client the handlers share."""
        memo.context = Context(config, Kube.connect())

    kopf.on.login(registry=registry)(login)
    for handlers in (dataset_handlers, training_handlers, serving_handlers):
        handlers.register(registry, config.poll_interval_seconds)
    return registry
