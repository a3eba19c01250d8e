"""Who may predict from a ModelDeployment: the pure decisions behind the gateway's token checks.

With ``spec.auth.requireToken`` the gateway takes the caller's ``Authorization: Bearer``
token to the Kubernetes API: a TokenReview says whose token it is, then a
SubjectAccessReview whether that user may ``create`` the ``predict`` subresource of
this ModelDeployment (``modeldeployments/predict`` in its namespace, by name). This
module builds those review requests and reads their answers; ``access`` sends them.
A refusal is a GatewayError: 401 (UNAUTHENTICATED) for a missing, malformed or
unknown token, 403 (PERMISSION_DENIED) for a user RBAC does not allow.

An allowed token is remembered for ``REVIEW_TTL_S`` seconds, so a client's steady
stream of predictions costs two reviews per token per interval, not per request; a
revoked permission takes at most that long to apply. Refusals are never remembered.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from autovision.resources import GROUP, ModelDeployment
from autovision.serving.gateway import GatewayError

REVIEW_TTL_S: Final = 10.0
"""Seconds an allowed token stays allowed without a new review."""
CACHE_SIZE: Final = 1024
"""Allowed tokens remembered at once; the least recently allowed one goes first."""
PREDICT_VERB: Final = "create"
PREDICT_SUBRESOURCE: Final = "predict"
RESOURCE: Final = ModelDeployment.info.plural
AUTHENTICATION_API: Final = "authentication.k8s.io/v1"
AUTHORIZATION_API: Final = "authorization.k8s.io/v1"
_SCHEME: Final = "bearer"


@dataclass(frozen=True)
class AccessTarget:
    """The ModelDeployment whose ``predict`` subresource a caller must be allowed."""

    namespace: str
    name: str

    def describe(self) -> str:
        """How a refusal names the permission, so the caller's admin knows what to grant."""
        permission = f"{PREDICT_VERB} {RESOURCE}/{PREDICT_SUBRESOURCE} ({GROUP})"
        return f"{permission} {self.name!r} in namespace {self.namespace!r}"


@dataclass(frozen=True)
class User:
    """Who a TokenReview says a token belongs to, as a SubjectAccessReview asks about them."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


def unauthenticated(message: str) -> GatewayError:
    """A 401: the gateway does not know who is asking."""
    return GatewayError(401, message)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer TOKEN`` header; 401 when there is none."""
    if not authorization:
        raise unauthenticated("this ModelDeployment requires a Kubernetes token: send Authorization: Bearer TOKEN")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != _SCHEME or not token or any(c.isspace() for c in token):
        raise unauthenticated("the Authorization header must be 'Bearer TOKEN'")
    return token


def token_review(token: str) -> dict[str, Any]:
    """The TokenReview that asks the API server whose token this is."""
    return {"apiVersion": AUTHENTICATION_API, "kind": "TokenReview", "spec": {"token": token}}


def reviewed_user(review: Mapping[str, Any]) -> User:
    """The user of an answered TokenReview; 401 when the API server does not know the token."""
    status = review.get("status") or {}
    if not status.get("authenticated"):
        reason = status.get("error") or "unknown or expired token"
        raise unauthenticated(f"the token was not accepted by the Kubernetes API: {reason}")
    user = status.get("user") or {}
    extra = tuple(sorted((key, tuple(values)) for key, values in (user.get("extra") or {}).items()))
    return User(str(user.get("username", "")), str(user.get("uid", "")), tuple(user.get("groups") or ()), extra)


def access_review(user: User, target: AccessTarget) -> dict[str, Any]:
    """The SubjectAccessReview asking whether ``user`` may predict from the target ModelDeployment."""
    spec: dict[str, Any] = {
        "user": user.username,
        "groups": list(user.groups),
        "resourceAttributes": {
            "group": GROUP,
            "resource": RESOURCE,
            "subresource": PREDICT_SUBRESOURCE,
            "verb": PREDICT_VERB,
            "namespace": target.namespace,
            "name": target.name,
        },
    }
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {key: list(values) for key, values in user.extra}
    return {"apiVersion": AUTHORIZATION_API, "kind": "SubjectAccessReview", "spec": spec}


def check_allowed(review: Mapping[str, Any], user: User, target: AccessTarget) -> None:
    """Nothing when the answered SubjectAccessReview allows; 403 naming the permission otherwise."""
    status = review.get("status") or {}
    if status.get("allowed") and not status.get("denied"):
        return
    why = status.get("reason") or status.get("evaluationError") or "no RBAC rule allows it"
    raise GatewayError(403, f"{user.username!r} may not {target.describe()}: {why}")


class ReviewCache:
    """Tokens recently allowed, by digest (the tokens themselves are not kept), each until it expires.

    Pure: the caller passes the time, so tests need no clock.
    """

    def __init__(self, ttl_s: float = REVIEW_TTL_S, size: int = CACHE_SIZE) -> None:
        self._ttl_s = ttl_s
        self._size = size
        self._until: OrderedDict[str, float] = OrderedDict()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def allowed(self, token: str, now: float) -> bool:
        """Whether ``token`` was allowed less than the TTL ago."""
        key = self._key(token)
        until = self._until.get(key)
        if until is None:
            return False
        if now >= until:
            del self._until[key]
            return False
        return True

    def remember(self, token: str, now: float) -> None:
        """Record an allowed token until ``now`` + TTL, forgetting the oldest one beyond the size."""
        key = self._key(token)
        self._until.pop(key, None)
        self._until[key] = now + self._ttl_s
        while len(self._until) > self._size:
            self._until.popitem(last=False)
