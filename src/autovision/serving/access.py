"""The gateway's token checks: may this caller predict from this ModelDeployment?

With ``spec.auth.requireToken`` the gateway takes the caller's ``Authorization: Bearer``
token to the Kubernetes API (``autovision.auth``): a TokenReview says whose token it
is, then a SubjectAccessReview whether that user may ``create`` the ``predict``
subresource of this ModelDeployment (``modeldeployments/predict`` in its namespace,
by name). ``Gatekeeper.check`` is what the REST routes and the gRPC services call
before any work; it answers a refusal as a GatewayError: 401 (UNAUTHENTICATED),
403 (PERMISSION_DENIED), or 503 when the API server cannot be asked. The gateway
calls the API server as its pod's service account (token and CA mounted by
Kubernetes; RBAC to create both reviews from the chart).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from autovision.auth import reviews
from autovision.auth.kubernetes import KubeApi, KubeClient, KubeError, TokenChecker
from autovision.auth.reviews import AccessDeniedError, Permission
from autovision.resources import GROUP, ModelDeployment
from autovision.serving.gateway import RETRY_AFTER_UNAVAILABLE_S, GatewayError
from autovision.settings import Settings

PREDICT_VERB: Final = "create"
PREDICT_SUBRESOURCE: Final = "predict"


def predict_permission(namespace: str, name: str) -> Permission:
    """The permission a caller needs to predict from one ModelDeployment."""
    return Permission(
        PREDICT_VERB, GROUP, ModelDeployment.info.plural, namespace, subresource=PREDICT_SUBRESOURCE, name=name
    )


@dataclass(frozen=True)
class AccessConfig:
    """Token checks of one gateway: the permission callers need, and the API that says who has it."""

    permission: Permission
    api: KubeApi
    ttl_s: float = reviews.REVIEW_TTL_S


def access_config(settings: Settings) -> AccessConfig | None:
    """The token checks the settings ask for (in a cluster, as the operator sets them); None when off."""
    if not settings.gateway_require_token:
        return None
    name, namespace = settings.gateway_deployment_name, settings.gateway_deployment_namespace
    if not name or not namespace:
        raise ValueError("token checks need the ModelDeployment's name and namespace in the gateway's settings")
    return AccessConfig(predict_permission(namespace, name), KubeApi.in_cluster())


class Gatekeeper:
    """Lets a request through only when its bearer token may predict from the target; else GatewayError."""

    def __init__(self, config: AccessConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._permission = config.permission
        self._client = KubeClient(config.api)
        self._checker = TokenChecker(self._client, config.ttl_s, clock)

    async def check(self, authorization: str | None) -> None:
        """Raise 401, 403 or 503 (GatewayError) unless this Authorization header may predict."""
        try:
            await self._checker.check(reviews.bearer_token(authorization), self._permission)
        except AccessDeniedError as refused:
            raise GatewayError(refused.status, refused.message) from None
        except KubeError as error:
            message = f"cannot check the token: {error.message}"
            raise GatewayError(503, message, RETRY_AFTER_UNAVAILABLE_S) from error

    async def close(self) -> None:
        """Close the connection pool to the API server."""
        await self._client.close()
