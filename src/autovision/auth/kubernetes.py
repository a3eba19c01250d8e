"""The Kubernetes API as AutoVision's in-cluster servers call it: JSON over HTTPS as their pod's service account.

``KubeClient`` sends requests with the pod's own token (re-read on every request: the
kubelet rotates it) and turns every failure into one ``KubeError``. ``TokenChecker``
uses it to run the reviews of ``autovision.auth.reviews``: whose is this token, and
may that user have this permission. An API server that cannot be asked is a
``KubeError`` with status 503: a caller is never let through unchecked.
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

from autovision.auth import reviews
from autovision.auth.reviews import Permission, ReviewCache, User

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Set by the kubelet in every container, whatever enableServiceLinks says.
HOST_VARIABLE: Final = "KUBERNETES_SERVICE_HOST"
PORT_VARIABLE: Final = "KUBERNETES_SERVICE_PORT"
REQUEST_TIMEOUT_S: Final = 5.0
TOKEN_REVIEWS: Final = f"/apis/{reviews.AUTHENTICATION_API}/tokenreviews"
ACCESS_REVIEWS: Final = f"/apis/{reviews.AUTHORIZATION_API}/subjectaccessreviews"


@dataclass(frozen=True)
class KubeApi:
    """Where the API server is and how a pod proves who it is to it."""

    url: str
    token_file: Path
    ca_file: Path | None = None

    @classmethod
    def in_cluster(cls) -> KubeApi:
        """The API server of the pod's cluster, as the pod's service account."""
        host, port = os.environ.get(HOST_VARIABLE), os.environ.get(PORT_VARIABLE, "443")
        if not host:
            raise RuntimeError(f"this needs the Kubernetes API, but {HOST_VARIABLE} is not set")
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", SERVICE_ACCOUNT_DIR / "token", SERVICE_ACCOUNT_DIR / "ca.crt")


class KubeError(Exception):
    """A request the API server refused (its status) or did not answer (503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class KubeClient:
    """JSON requests to the API server as the pod's service account; one connection pool."""

    def __init__(self, api: KubeApi, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._api = api
        ssl_context = ssl.create_default_context(cafile=str(api.ca_file)) if api.ca_file else None
        connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context else None
        self._session = aiohttp.ClientSession(
            api.url, connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
        )

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET one object or list."""
        return await self._request("GET", path, None, params)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST (create) one object."""
        return await self._request("POST", path, body, None)

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None, params: dict[str, str] | None
    ) -> dict[str, Any]:
        what = f"{method} {path}"
        try:
            headers = self.own_authorization()
            async with self._session.request(method, path, json=body, params=params, headers=headers) as reply:
                if reply.status not in {200, 201}:
                    raise KubeError(
                        503 if reply.status >= 500 else reply.status,
                        f"the Kubernetes API answered {what} with {reply.status}: {await _reason(reply)}",
                    )
                answer: dict[str, Any] = await reply.json()
                return answer
        except (OSError, aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise KubeError(
                503, f"the Kubernetes API did not answer {what} ({type(error).__name__}: {error})"
            ) from error

    def own_authorization(self) -> dict[str, str]:
        """The pod's own Authorization header, read again each time: the kubelet rotates the token file."""
        return {"Authorization": f"Bearer {self._api.token_file.read_text().strip()}"}

    async def close(self) -> None:
        """Close the connection pool to the API server."""
        await self._session.close()


async def _reason(reply: aiohttp.ClientResponse) -> str:
    """A Status object's message, or the start of whatever else came back."""
    text = await reply.text()
    try:
        message = (await reply.json(content_type=None)).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else text[:200]


class TokenChecker:
    """Whether a bearer token may have a permission: TokenReview, SubjectAccessReview, cached allowances."""

    def __init__(
        self, client: KubeClient, ttl_s: float = reviews.REVIEW_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._clock = clock
        self._cache = ReviewCache(ttl_s)

    async def check(self, token: str, permission: Permission) -> None:
        """Nothing when allowed; AccessDeniedError (401, 403) or KubeError (the API server) otherwise."""
        if self._cache.allowed(token, permission, self._clock()):
            return
        user = await self.user(token)
        reviews.check_allowed(
            await self._client.post(ACCESS_REVIEWS, reviews.access_review(user, permission)), user, permission
        )
        self._cache.remember(token, permission, self._clock())

    async def user(self, token: str) -> User:
        """Whose token this is; AccessDeniedError (401) when the API server does not know it."""
        return reviews.reviewed_user(await self._client.post(TOKEN_REVIEWS, reviews.token_review(token)))
