"""The console's identifiers: names and hashes only, nothing a storage key could be steered with."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from autovision.console.source import DatasetRef, ImageQuery, RunRef, checked_sha256, checked_token


@pytest.mark.parametrize("name", ["..", "a/b", "A", "-a", "a" * 64, "", "a_b", "a%2fb"])
def test_dataset_names_are_kubernetes_names(name: str) -> None:
    with pytest.raises(ValidationError):
        DatasetRef(namespace="local", name=name)


@pytest.mark.parametrize("uid", ["..", "a/b", "a..b", "", ".hidden", "x" * 200])
def test_run_uids_cannot_leave_their_prefix(uid: str) -> None:
    with pytest.raises(ValidationError):
        RunRef(namespace="local", job="job", uid=uid)


def test_valid_identifiers_pass_and_refs_are_hashable() -> None:
    assert checked_token("sha256-ab12", "version") == "sha256-ab12"
    assert checked_sha256("a" * 64) == "a" * 64
    assert len({RunRef(namespace="local", job="j", uid="u1"), RunRef(namespace="local", job="j", uid="u1")}) == 1
    with pytest.raises(ValueError, match="not a sha256"):
        checked_sha256("A" * 64)


def test_a_page_asks_for_at_most_500_images() -> None:
    assert ImageQuery.model_validate({"limit": "500"}).limit == 500
    with pytest.raises(ValidationError):
        ImageQuery.model_validate({"limit": "501"})
