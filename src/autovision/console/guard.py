"""Who may do what through the console: one check before every API call.

Locally the console has no guard (``None``): it binds to 127.0.0.1 and acts as
the user who started it. In a cluster the guard authenticates the caller's
bearer token and asks Kubernetes whether that identity may do ``verb`` on
``resource`` (TokenReview plus SubjectAccessReview), so RBAC decides.

The app calls ``check`` with these pairs (resources of group ``autovision.dev``):

======================  ============================  =================================
page action             verb                          resource
======================  ============================  =================================
list / read datasets    ``list`` / ``get``            ``datasets``
import a dataset        ``create``                    ``datasets``
list / read runs        ``list`` / ``get``            ``trainingjobs``
start a run             ``create``                    ``trainingjobs``
list deployments        ``list``                      ``modeldeployments``
test an image           ``create``                    ``modeldeployments/predict``
======================  ============================  =================================

``namespace`` of the object acted on is in the request's match info when there is one.
"""

from __future__ import annotations

from typing import Final, Protocol

from aiohttp import web

LIST: Final = "list"
GET: Final = "get"
CREATE: Final = "create"
DATASETS: Final = "datasets"
TRAINING_JOBS: Final = "trainingjobs"
MODEL_DEPLOYMENTS: Final = "modeldeployments"
PREDICT: Final = "modeldeployments/predict"


class ConsoleGuard(Protocol):
    """Lets a request through, or refuses it before the console reads or writes anything."""

    async def check(self, request: web.Request, verb: str, resource: str) -> None:
        """Raise ``web.HTTPUnauthorized`` (no or bad identity) or ``web.HTTPForbidden`` (RBAC says no)."""
        ...
