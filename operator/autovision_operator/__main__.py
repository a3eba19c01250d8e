"""``autovision-operator``: run the kopf operator with the chart's configuration."""

from __future__ import annotations

import kopf
import prometheus_client

from autovision_operator.config import OperatorConfig, kopf_settings
from autovision_operator.handlers import build_registry


def main() -> None:
    """Start the metrics endpoint and run the operator until it is stopped.

    Watches AUTOVISION_WATCH_NAMESPACES, or all namespaces when that is empty;
    kopf serves its liveness probe at AUTOVISION_LIVENESS_ENDPOINT.
    """
    config = OperatorConfig()
    kopf.configure(verbose=False)
    if config.metrics_port is not None:
        prometheus_client.start_http_server(config.metrics_port)
    kopf.run(
        registry=build_registry(config),
        settings=kopf_settings(config),
        clusterwide=not config.watch_namespaces,
        namespaces=config.watch_namespaces,
        liveness_endpoint=config.liveness_endpoint,
    )


if __name__ == "__main__":
    main()
