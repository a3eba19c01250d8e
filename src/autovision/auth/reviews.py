"""Who may do what: the pure decisions behind every Kubernetes token check.

A caller brings a bearer token. A TokenReview asks the API server whose token it is;
a SubjectAccessReview then asks whether that user may do a verb on a resource (and
subresource, name) in a namespace, so RBAC, not AutoVision, decides. This module
builds both review requests and reads their answers; ``autovision.auth.kubernetes``
sends them. A refusal is ``AccessDeniedError``: 401 for a missing, malformed or unknown
token, 403 for a user RBAC does not allow.

An allowed (token, permission) pair is remembered for ``REVIEW_TTL_S`` seconds, so a
steady stream of requests costs two reviews per pair per interval, not per request;
a revoked permission takes at most that long to apply. Refusals are never remembered.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

REVIEW_TTL_S: Final = 10.0
"""Seconds an allowed token stays allowed without a new review."""
CACHE_SIZE: Final = 1024
"""Allowed (token, permission) pairs remembered at once; the least recently allowed goes first."""
AUTHENTICATION_API: Final = "authentication.k8s.io/v1"
AUTHORIZATION_API: Final = "authorization.k8s.io/v1"
_SCHEME: Final = "bearer"


class AccessDeniedError(Exception):
    """A caller refused: 401 (who are you?) or 403 (not allowed), with a message for them."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Permission:
    """What a caller must be allowed, as a SubjectAccessReview's resourceAttributes name it."""

    verb: str
    group: str
    resource: str
    namespace: str
    subresource: str = ""
    name: str = ""

    def describe(self) -> str:
        """How a refusal names the permission, so the caller's admin knows what to grant."""
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        named = f" {self.name!r}" if self.name else ""
        return f"{self.verb} {resource} ({self.group or 'core'}){named} in namespace {self.namespace!r}"

    def attributes(self) -> dict[str, str]:
        """The SubjectAccessReview's resourceAttributes."""
        attributes = {"group": self.group, "resource": self.resource, "verb": self.verb, "namespace": self.namespace}
        if self.subresource:
            attributes["subresource"] = self.subresource
        if self.name:
            attributes["name"] = self.name
        return attributes


@dataclass(frozen=True)
class User:
    """Who a TokenReview says a token belongs to, as a SubjectAccessReview asks about them."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer TOKEN`` header; 401 when there is none."""
    if not authorization:
        raise AccessDeniedError(401, "this requires a Kubernetes token: send Authorization: Bearer TOKEN")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != _SCHEME or not token or any(c.isspace() for c in token):
        raise AccessDeniedError(401, "the Authorization header must be 'Bearer TOKEN'")
    return token


def token_review(token: str) -> dict[str, Any]:
    """The TokenReview that asks the API server whose token this is."""
    return {"apiVersion": AUTHENTICATION_API, "kind": "TokenReview", "spec": {"token": token}}


def reviewed_user(review: Mapping[str, Any]) -> User:
    """The user of an answered TokenReview; 401 when the API server does not know the token."""
    status = review.get("status") or {}
    if not status.get("authenticated"):
        reason = status.get("error") or "unknown or expired token"
        raise AccessDeniedError(401, f"the token was not accepted by the Kubernetes API: {reason}")
    user = status.get("user") or {}
    extra = tuple(sorted((key, tuple(values)) for key, values in (user.get("extra") or {}).items()))
    return User(str(user.get("username", "")), str(user.get("uid", "")), tuple(user.get("groups") or ()), extra)


def access_review(user: User, permission: Permission) -> dict[str, Any]:
    """The SubjectAccessReview asking whether ``user`` has ``permission``."""
    spec: dict[str, Any] = {
        "user": user.username,
        "groups": list(user.groups),
        "resourceAttributes": permission.attributes(),
    }
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {key: list(values) for key, values in user.extra}
    return {"apiVersion": AUTHORIZATION_API, "kind": "SubjectAccessReview", "spec": spec}


def check_allowed(review: Mapping[str, Any], user: User, permission: Permission) -> None:
    """Nothing when the answered SubjectAccessReview allows; 403 naming the permission otherwise."""
    status = review.get("status") or {}
    if status.get("allowed") and not status.get("denied"):
        return
    why = status.get("reason") or status.get("evaluationError") or "no RBAC rule allows it"
    raise AccessDeniedError(403, f"{user.username!r} may not {permission.describe()}: {why}")


class ReviewCache:
    """(token, permission) pairs recently allowed, by digest (no token is kept), each until it expires.

    Pure: the caller passes the time, so tests need no clock.
    """

    def __init__(self, ttl_s: float = REVIEW_TTL_S, size: int = CACHE_SIZE) -> None:
        self._ttl_s = ttl_s
        self._size = size
        self._until: OrderedDict[str, float] = OrderedDict()

    @staticmethod
    def _key(token: str, permission: Permission) -> str:
        return hashlib.sha256(f"{token}\0{permission!r}".encode()).hexdigest()

    def allowed(self, token: str, permission: Permission, now: float) -> bool:
        """Whether ``token`` was allowed ``permission`` less than the TTL ago."""
        key = self._key(token, permission)
        until = self._until.get(key)
        if until is None:
            return False
        if now >= until:
            del self._until[key]
            return False
        return True

    def remember(self, token: str, permission: Permission, now: float) -> None:
        """Record an allowed pair until ``now`` + TTL, forgetting the oldest one beyond the size."""
        key = self._key(token, permission)
        self._until.pop(key, None)
        self._until[key] = now + self._ttl_s
        while len(self._until) > self._size:
            self._until.popitem(last=False)
