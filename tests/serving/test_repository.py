"""The local Triton model repository: its layout, replaced whole, kept on a failed write."""

from __future__ import annotations

from pathlib import Path

import pytest

import autovision.preprocess
from autovision.preprocess import PreprocessConfig
from autovision.serving import (
    RepositoryError,
    write_local_repository,
)
from tests.support.serving import (
    LABELS,
    PREPROCESS,
    parse_config,
)


def test_repository_layout(tmp_path: Path, onnx_path: Path) -> None:
    model_dir = write_local_repository(tmp_path / "repo", onnx_path, LABELS, PREPROCESS)

    assert model_dir == (tmp_path / "repo" / "autovision").resolve()
    assert sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*")) == [
        "1",
        "1/backend_common.py",
        "1/model.onnx",
        "1/model.py",
        "1/preprocess.json",
        "1/preprocess.py",
        "config.pbtxt",
        "labels.txt",
    ]
    shipped = (model_dir / "1" / "preprocess.py").read_bytes()
    assert shipped == Path(autovision.preprocess.__file__).read_bytes()
    assert (model_dir / "labels.txt").read_text().splitlines() == LABELS
    saved = (model_dir / "1" / "preprocess.json").read_text()
    assert PreprocessConfig.from_json(saved) == PREPROCESS
    assert (model_dir / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()
    assert "class TritonPythonModel" in (model_dir / "1" / "model.py").read_text()
    assert parse_config((model_dir / "config.pbtxt").read_text()).output[0].dims == [5]


def test_repository_replaces_existing_model_and_leaves_no_staging(tmp_path: Path, onnx_path: Path) -> None:
    repo = tmp_path / "repo"
    write_local_repository(repo, onnx_path, LABELS, PREPROCESS)
    (repo / "autovision" / "stale.txt").write_text("from the old version")

    model_dir = write_local_repository(repo, onnx_path, ["a", "b"], PREPROCESS)

    assert not (model_dir / "stale.txt").exists()
    assert (model_dir / "labels.txt").read_text() == "a\nb\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    assert sorted(p.name for p in repo.iterdir()) == ["autovision"]


def test_failed_write_keeps_the_previous_model(tmp_path: Path, onnx_path: Path) -> None:
    repo = tmp_path / "repo"
    write_local_repository(repo, onnx_path, LABELS, PREPROCESS)
    before = (repo / "autovision" / "config.pbtxt").read_text()

    with pytest.raises(RepositoryError, match="does not exist"):
        write_local_repository(repo, tmp_path / "missing.onnx", LABELS, PREPROCESS)
    with pytest.raises(RepositoryError, match="unique"):
        write_local_repository(repo, onnx_path, ["a", "a"], PREPROCESS)

    assert (repo / "autovision" / "config.pbtxt").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
