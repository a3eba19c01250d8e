"""``autovision train``: options and datasets refused before any work starts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from autovision.cli import app
from autovision.contract import env
from autovision.contract.keys import latest_key, manifest_key
from autovision.data.inspection import available_cores
from autovision.storage import Storage

runner = CliRunner()


def test_nproc_above_the_available_cores_is_refused_with_one_message() -> None:
    cores = available_cores()
    args = ["train", "--dataset", "digits", "--budget-milli-node-hours", "1", "--nproc", str(cores + 1)]

    result = runner.invoke(app, args)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert f"--nproc {cores + 1} is more than the {cores} CPU cores" in " ".join(result.stderr.split())


def test_a_dataset_of_the_older_format_is_refused_with_one_message(
    file_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_storage.write_bytes(manifest_key("pets", "sha256-old"), b'{"uri": "file:///x.png"}\n')
    file_storage.write_json(latest_key("pets"), {"version": "sha256-old"})
    monkeypatch.setenv(env.STORAGE_ROOT, file_storage.uri(""))

    result = runner.invoke(app, ["train", "--dataset", "pets", "--budget-milli-node-hours", "1"])

    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "imported by an older AutoVision" in message
    assert message.endswith("import the dataset again")
