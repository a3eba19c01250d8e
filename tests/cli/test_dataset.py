"""``autovision dataset import`` and ``describe``: tables, one JSON object, one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autovision.cli import app
from autovision.storage import Storage
from tests.support.datasets import image_bytes, labelled, write_zip
from tests.support.memory import ScaleDatasets, assert_bounded, peaks, version_args

runner = CliRunner()


@pytest.fixture
def storage_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Storage:
    root = f"file://{tmp_path / 'storage'}"
    monkeypatch.setenv("AUTOVISION_STORAGE_ROOT", root)
    return Storage(root)


def test_import_then_describe_as_json(storage_root: Storage, tmp_path: Path) -> None:
    source = write_zip(tmp_path / "pets.zip", labelled(10) | {"dog/bad.png": b"GIF89a nonsense"})
    imported = runner.invoke(app, ["dataset", "import", str(source), "--name", "pets", "--json"])
    assert imported.exit_code == 0, imported.output
    summary = json.loads(imported.stdout)
    assert summary["reused"] is False
    assert (summary["kept"], summary["rejected"], summary["rejectReasons"]) == (20, 1, {"not_an_image": 1})
    assert summary["perLabel"]["cat"] == {"train": 8, "validation": 1, "test": 1}
    assert {w["reason"] for w in summary["warnings"]} == {"FewImages", "RejectedFiles"}

    described = runner.invoke(app, ["dataset", "describe", "pets", "--json"])
    assert described.exit_code == 0, described.output
    assert json.loads(described.stdout) == {k: v for k, v in summary.items() if k != "reused"}

    again = runner.invoke(app, ["dataset", "import", str(source), "--name", "pets", "--json"])
    assert json.loads(again.stdout)["reused"] is True


def test_import_prints_label_stats_and_warnings(storage_root: Storage, tmp_path: Path) -> None:
    source = write_zip(tmp_path / "pets.zip", labelled(10))
    result = runner.invoke(app, ["dataset", "import", str(source), "--name", "pets", "--task", "multi-label"])
    assert result.exit_code == 0, result.output
    for text in ("(MultiLabel)", "label", "validation", "cat", "dog", "FewImages", "20 images kept"):
        assert text in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dataset", "import", "{tmp}/empty.zip", "--name", "pets"], "archive holds no files"),
        (["dataset", "import", "{tmp}/nowhere.zip", "--name", "pets"], "does not exist"),
        (["dataset", "import", "{tmp}/empty.zip", "--name", "../up"], "dataset name"),
        (["dataset", "describe", "pets"], "has no imported version"),
    ],
)
def test_refusals_exit_non_zero_with_one_line(
    storage_root: Storage, tmp_path: Path, args: list[str], message: str
) -> None:
    write_zip(tmp_path / "empty.zip", {})
    result = runner.invoke(app, [arg.format(tmp=tmp_path) for arg in args])
    assert result.exit_code == 1
    # One message; rich folds it at the console width when stderr is not a terminal.
    assert result.stderr.startswith("error: ")
    assert message in " ".join(result.stderr.split()), result.stderr
    assert result.stdout.strip() == ""
    assert storage_root.list_keys("") == []


def test_a_review_csv_is_added_to_the_previous_version(storage_root: Storage, tmp_path: Path) -> None:
    source = write_zip(tmp_path / "pets.zip", labelled(10))
    assert runner.invoke(app, ["dataset", "import", str(source), "--name", "pets", "--json"]).exit_code == 0
    images = {f"n{i}": image_bytes(5000 + i) for i in range(4)}
    for name, data in images.items():  # logged images: raw bytes, no extension
        (tmp_path / name).write_bytes(data)
    (tmp_path / "review.csv").write_text("".join(f"{tmp_path / name},cat\n" for name in images))

    args = ["dataset", "import", str(tmp_path / "review.csv"), "--name", "pets", "--add-to-previous", "--json"]
    added = runner.invoke(app, args)

    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["kept"] == 24


def test_describe_peak_memory_does_not_grow_with_the_version(scale_datasets: ScaleDatasets) -> None:
    assert_bounded("dataset describe", peaks("describe", version_args(scale_datasets)))


def test_import_in_slices_gives_the_same_version(storage_root: Storage, tmp_path: Path) -> None:
    source = write_zip(tmp_path / "pets.zip", labelled(10))
    sliced = runner.invoke(app, ["dataset", "import", str(source), "--name", "pets", "--slices", "2", "--json"])
    assert sliced.exit_code == 0, sliced.output
    whole = runner.invoke(app, ["dataset", "import", str(source), "--name", "pets", "--slices", "1", "--json"])
    assert (json.loads(whole.stdout)["version"], json.loads(whole.stdout)["reused"]) == (
        json.loads(sliced.stdout)["version"],
        True,
    )
