"""The token checks' decisions, without servers: what the reviews ask, what their answers mean, what is cached."""

from __future__ import annotations

import pytest

from autovision.auth.reviews import (
    REVIEW_TTL_S,
    AccessDeniedError,
    Permission,
    ReviewCache,
    User,
    access_review,
    bearer_token,
    check_allowed,
    reviewed_user,
    token_review,
)

PREDICT = Permission("create", "autovision.dev", "modeldeployments", "ml", subresource="predict", name="flowers")
LIST = Permission("list", "autovision.dev", "datasets", "ml")
ALICE = User("alice", "u-1", ("team-a", "system:authenticated"), (("scopes", ("predict",)),))


def test_bearer_token_is_taken_from_the_header() -> None:
    assert bearer_token("Bearer abc.def") == "abc.def"
    assert bearer_token("bearer  abc ") == "abc"


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwdw==", "Bearer", "Bearer a b", "abc"])
def test_a_missing_or_malformed_header_is_unauthenticated(header: str | None) -> None:
    with pytest.raises(AccessDeniedError) as refused:
        bearer_token(header)
    assert refused.value.status == 401


def test_token_review_asks_about_the_token() -> None:
    assert token_review("t") == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": "t"},
    }


def test_an_authenticated_review_names_the_user() -> None:
    review = {
        "status": {
            "authenticated": True,
            "user": {
                "username": "alice",
                "uid": "u-1",
                "groups": ["team-a", "system:authenticated"],
                "extra": {"scopes": ["predict"]},
            },
        }
    }
    assert reviewed_user(review) == ALICE


@pytest.mark.parametrize(
    "status", [{}, {"authenticated": False}, {"authenticated": False, "error": "token expired"}], ids=str
)
def test_an_unauthenticated_review_is_401(status: dict[str, object]) -> None:
    with pytest.raises(AccessDeniedError) as refused:
        reviewed_user({"status": status})
    assert refused.value.status == 401
    assert "not accepted" in refused.value.message
    if "error" in status:
        assert "token expired" in refused.value.message


def test_access_review_asks_for_the_permission_as_the_user() -> None:
    assert access_review(ALICE, PREDICT) == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "alice",
            "uid": "u-1",
            "groups": ["team-a", "system:authenticated"],
            "extra": {"scopes": ["predict"]},
            "resourceAttributes": {
                "group": "autovision.dev",
                "resource": "modeldeployments",
                "subresource": "predict",
                "verb": "create",
                "namespace": "ml",
                "name": "flowers",
            },
        },
    }


def test_a_collection_permission_names_no_object() -> None:
    attributes = access_review(User("bob"), LIST)["spec"]["resourceAttributes"]
    assert attributes == {"group": "autovision.dev", "resource": "datasets", "verb": "list", "namespace": "ml"}
    assert LIST.describe() == "list datasets (autovision.dev) in namespace 'ml'"


def test_an_allowed_review_lets_the_caller_through() -> None:
    check_allowed({"status": {"allowed": True}}, ALICE, PREDICT)


@pytest.mark.parametrize(
    "status",
    [{}, {"allowed": False}, {"allowed": False, "reason": "no binding"}, {"allowed": True, "denied": True}],
    ids=str,
)
def test_a_refused_review_is_403_naming_the_permission(status: dict[str, object]) -> None:
    with pytest.raises(AccessDeniedError) as refused:
        check_allowed({"status": status}, ALICE, PREDICT)
    assert refused.value.status == 403
    assert "'alice' may not create modeldeployments/predict (autovision.dev) 'flowers' in namespace 'ml'" in (
        refused.value.message
    )


def test_an_allowed_pair_is_remembered_for_the_ttl_only() -> None:
    cache = ReviewCache()
    assert not cache.allowed("t", PREDICT, 100.0)
    cache.remember("t", PREDICT, 100.0)
    assert cache.allowed("t", PREDICT, 100.0 + REVIEW_TTL_S - 0.01)
    assert not cache.allowed("other", PREDICT, 100.0)
    assert not cache.allowed("t", LIST, 100.0), "an allowance is for one permission only"
    assert not cache.allowed("t", PREDICT, 100.0 + REVIEW_TTL_S)
    assert not cache.allowed("t", PREDICT, 100.0), "an expired token is forgotten, not revived"


def test_the_cache_forgets_the_oldest_pair_beyond_its_size() -> None:
    cache = ReviewCache(ttl_s=60.0, size=2)
    for token in ("a", "b", "c"):
        cache.remember(token, LIST, 0.0)
    assert [cache.allowed(token, LIST, 1.0) for token in ("a", "b", "c")] == [False, True, True]


def test_the_cache_keeps_no_token_in_clear() -> None:
    cache = ReviewCache()
    cache.remember("secret-token", LIST, 0.0)
    assert "secret-token" not in repr(vars(cache))
