"""``autovision train``: options refused before any work starts."""

from __future__ import annotations

from typer.testing import CliRunner

from autovision.cli import app
from autovision.data.inspection import available_cores

runner = CliRunner()


def test_nproc_above_the_available_cores_is_refused_with_one_message() -> None:
    cores = available_cores()
    args = ["train", "--dataset", "digits", "--budget-milli-node-hours", "1", "--nproc", str(cores + 1)]

    result = runner.invoke(app, args)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert f"--nproc {cores + 1} is more than the {cores} CPU cores" in " ".join(result.stderr.split())
