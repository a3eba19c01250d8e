"""The gateway's token check against the Kubernetes API: TokenReview, then SubjectAccessReview.

``Gatekeeper.check`` is what the REST routes and the gRPC services call before any
work; the decisions (what to ask, what an answer means, how long an allowed token
is remembered) are ``access_policy``'s. The gateway calls the API server as its pod's
service account (token and CA mounted by Kubernetes; RBAC to create both reviews from
the chart). An API server that cannot be asked makes the gateway answer 503: a
caller is never let through unchecked.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from autovision.serving import access_policy
from autovision.serving.access_policy import AccessTarget, ReviewCache
from autovision.serving.gateway import RETRY_AFTER_UNAVAILABLE_S, GatewayError
from autovision.settings import Settings

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Set by the kubelet in every container, whatever enableServiceLinks says.
HOST_VARIABLE: Final = "KUBERNETES_SERVICE_HOST"
PORT_VARIABLE: Final = "KUBERNETES_SERVICE_PORT"
REVIEW_TIMEOUT_S: Final = 5.0
TOKEN_REVIEWS: Final = f"/apis/{access_policy.AUTHENTICATION_API}/tokenreviews"
ACCESS_REVIEWS: Final = f"/apis/{access_policy.AUTHORIZATION_API}/subjectaccessreviews"


@dataclass(frozen=True)
class KubeApi:
    """Where the API server is and how the gateway proves who it is to it."""

    url: str
    token_file: Path
    ca_file: Path | None = None

    @classmethod
    def in_cluster(cls) -> KubeApi:
        """The API server of the pod's cluster, as the pod's service account."""
        host, port = os.environ.get(HOST_VARIABLE), os.environ.get(PORT_VARIABLE, "443")
        if not host:
            raise RuntimeError(f"token checks need the Kubernetes API, but {HOST_VARIABLE} is not set")
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", SERVICE_ACCOUNT_DIR / "token", SERVICE_ACCOUNT_DIR / "ca.crt")


@dataclass(frozen=True)
class AccessConfig:
    """Token checks of one gateway: the ModelDeployment callers must be allowed, and the API that says so."""

    target: AccessTarget
    api: KubeApi
    ttl_s: float = access_policy.REVIEW_TTL_S


def access_config(settings: Settings) -> AccessConfig | None:
    """The token checks the settings ask for (in a cluster, as the operator sets them); None when off."""
    if not settings.gateway_require_token:
        return None
    name, namespace = settings.gateway_deployment_name, settings.gateway_deployment_namespace
    if not name or not namespace:
        raise ValueError("token checks need the ModelDeployment's name and namespace in the gateway's settings")
    return AccessConfig(AccessTarget(namespace, name), KubeApi.in_cluster())


class Gatekeeper:
    """Lets a request through only when its bearer token may predict from the target; else GatewayError."""

    def __init__(self, config: AccessConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._cache = ReviewCache(config.ttl_s)
        ssl_context = ssl.create_default_context(cafile=str(config.api.ca_file)) if config.api.ca_file else None
        connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context else None
        self._session = aiohttp.ClientSession(
            config.api.url, connector=connector, timeout=aiohttp.ClientTimeout(total=REVIEW_TIMEOUT_S)
        )

    async def check(self, authorization: str | None) -> None:
        """Raise 401, 403 or 503 (GatewayError) unless this Authorization header may predict."""
        token = access_policy.bearer_token(authorization)
        if self._cache.allowed(token, self._clock()):
            return
        user = access_policy.reviewed_user(await self._review(TOKEN_REVIEWS, access_policy.token_review(token)))
        target = self._config.target
        access_policy.check_allowed(
            await self._review(ACCESS_REVIEWS, access_policy.access_review(user, target)), user, target
        )
        self._cache.remember(token, self._clock())

    async def _review(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST one review as the gateway's service account; 503 when the API server cannot answer it."""
        kind = body["kind"]
        try:
            # Re-read each time: the kubelet rotates the projected token file.
            own_token = self._config.api.token_file.read_text().strip()
            async with self._session.post(path, json=body, headers={"Authorization": f"Bearer {own_token}"}) as reply:
                if reply.status not in {200, 201}:
                    detail = (await reply.text())[:200]
                    raise _cannot_check(f"the Kubernetes API answered {kind} with {reply.status}: {detail}")
                answer: dict[str, Any] = await reply.json()
                return answer
        except (OSError, aiohttp.ClientError, TimeoutError, ValueError) as error:
            detail = f"{type(error).__name__}: {error}"
            raise _cannot_check(f"the Kubernetes API did not answer {kind} ({detail})") from error

    async def close(self) -> None:
        """Close the connection pool to the API server."""
        await self._session.close()


def _cannot_check(message: str) -> GatewayError:
    return GatewayError(503, f"cannot check the token: {message}", RETRY_AFTER_UNAVAILABLE_S)
