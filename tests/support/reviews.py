"""KMock playing the API server's authenticator and RBAC authorizer for token checks.

A table of tokens stands for the authenticator (TokenReview), a set of grants for
RBAC (SubjectAccessReview): ``(user, group, resource, subresource, verb, namespace,
name)``, with "" for a subresource or name the permission does not have.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from autovision.auth.kubernetes import ACCESS_REVIEWS, TOKEN_REVIEWS

Grant = tuple[str, str, str, str, str, str, str]
ATTRIBUTES = ("group", "resource", "subresource", "verb", "namespace", "name")
USERS: Mapping[str, Mapping[str, Any]] = {
    "alice-token": {"username": "alice", "uid": "a1", "groups": ["team-a", "system:authenticated"]},
    "bob-token": {"username": "bob", "uid": "b1", "groups": ["system:authenticated"]},
}


def answer_reviews(api: Any, grants: Collection[Grant], users: Mapping[str, Mapping[str, Any]] = USERS) -> None:
    """Make ``api`` (a KMock server) answer both reviews from these tables."""

    def authenticate(request: Any) -> dict[str, Any]:
        user = users.get(request.data["spec"]["token"])
        status = {"authenticated": True, "user": user} if user else {"authenticated": False, "error": "invalid token"}
        return {**request.data, "status": status}

    def authorize(request: Any) -> dict[str, Any]:
        spec = request.data["spec"]
        attributes = spec["resourceAttributes"]
        allowed = (spec["user"], *(attributes.get(key, "") for key in ATTRIBUTES)) in grants
        return {**request.data, "status": {"allowed": allowed, **({} if allowed else {"reason": "no RBAC rule"})}}

    api[f"post {TOKEN_REVIEWS}"] << authenticate
    api[f"post {ACCESS_REVIEWS}"] << authorize


def review_counts(api: Any) -> tuple[int, int]:
    """How many TokenReviews and SubjectAccessReviews ``api`` was asked."""
    return len(api[f"post {TOKEN_REVIEWS}"]), len(api[f"post {ACCESS_REVIEWS}"])
