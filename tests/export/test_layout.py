"""Finding a finished model directory from a run, a directory or a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from autovision.export.layout import ModelNotFoundError, locate_model
from autovision.settings import Settings
from autovision.storage import Storage


def test_locate_model_accepts_a_run_a_model_directory_or_a_key(tmp_path: Path) -> None:
    storage = Storage(f"file://{tmp_path}")
    storage.write_json("runs/ns/job/u1/model/model.json", {})
    settings = Settings(storage_root=f"file://{tmp_path}")

    by_key = locate_model("runs/ns/job/u1", settings)
    assert (by_key.prefix, by_key.key("model.onnx")) == ("runs/ns/job/u1/model", "runs/ns/job/u1/model/model.onnx")
    assert locate_model(f"file://{tmp_path}/runs/ns/job/u1", settings).uri() == storage.uri("runs/ns/job/u1/model")
    assert locate_model(str(tmp_path / "runs/ns/job/u1/model"), settings).prefix == ""
    storage.write_bytes("runs/ns/job/u2/model/model.onnx", b"")  # unfinished: no model.json
    with pytest.raises(ModelNotFoundError, match=r"u2 holds no finished model"):
        locate_model("runs/ns/job/u2", settings)
