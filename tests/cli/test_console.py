"""``autovision console``: its options, and the deployments it is given."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from autovision.cli import app
from autovision.cli.console import parse_deployments


def test_deployments_are_name_url_pairs() -> None:
    assert parse_deployments(["flowers=http://127.0.0.1:8000/"]) == {"flowers": "http://127.0.0.1:8000/"}
    for bad in ("flowers", "flowers=ftp://x", "Bad Name=http://x"):
        with pytest.raises(ValueError, match=r"not a valid name|want NAME="):
            parse_deployments([bad])


def test_a_bad_deployment_is_one_error_line_and_nothing_starts() -> None:
    result = CliRunner().invoke(app, ["console", "--deployment", "nourl"])
    assert result.exit_code == 1
    assert "want NAME=http://HOST:PORT" in result.output


def test_the_console_binds_to_this_machine_by_default() -> None:
    result = CliRunner().invoke(app, ["console", "--help"], env={"COLUMNS": "200"})
    assert "127.0.0.1" in result.output
