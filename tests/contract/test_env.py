"""Environment variable names: one definition, checked against every file that spells them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autovision.contract import env
from autovision.settings import Settings
from autovision_operator.config import OperatorConfig
from tests.support.source_scan import REPO, source_strings

VARIABLE = re.compile(r"\bAUTOVISION_[A-Z0-9_]*[A-Z0-9]\b")


def documents() -> list[Path]:
    """What spells variable names outside Python: the chart's templates and values, READMEs, docs, Dockerfiles."""
    found = [*(REPO / "charts").rglob("*.yaml"), *(REPO / "charts").rglob("*.tpl"), *(REPO / "docs").glob("*.md")]
    found += [REPO / "README.md", *REPO.rglob("Dockerfile*")]
    return [path for path in found if ".venv" not in path.parts]


def test_every_name_the_chart_docs_and_images_use_is_in_the_contract() -> None:
    used = {(path.relative_to(REPO), name) for path in documents() for name in VARIABLE.findall(path.read_text())}
    assert used, "the scan must find the chart's variables"
    unknown = sorted(f"{path}: {name}" for path, name in used if name not in env.NAMES)
    assert unknown == []


@pytest.mark.parametrize("settings", [Settings, OperatorConfig])
def test_every_setting_reads_a_variable_of_the_contract(settings: type[Settings]) -> None:
    for name, field in settings.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", None) or [env.field_variable(name)]
        assert set(aliases) <= env.NAMES, f"{settings.__name__}.{name}"


def test_no_variable_is_spelled_outside_the_contract() -> None:
    spelled = [f"{place}: {text!r}" for place, text in source_strings() if VARIABLE.search(text)]
    assert spelled == [], "use autovision.contract.env"


def test_the_operator_and_the_core_agree_on_each_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """One name, one default: the operator's storage settings are the core's."""
    monkeypatch.setenv(env.STORAGE_ROOT, "s3://bucket/autovision")
    monkeypatch.delenv(env.IMPORT_URI_SCHEMES, raising=False)
    config = OperatorConfig(trainer_image="trainer:1")
    assert config.storage_settings() == Settings(storage_retry_seconds=0), "the operator's handlers retry by backoff"
    assert config.import_uri_schemes == Settings().import_uri_schemes


def test_the_operator_refuses_to_start_without_a_storage_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(env.STORAGE_ROOT, raising=False)
    with pytest.raises(ValueError, match=env.STORAGE_ROOT):
        OperatorConfig(trainer_image="trainer:1")
