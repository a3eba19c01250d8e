"""Atomic writes and error messages shared by the edge formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from autovision.export.edge_files import EdgeExportError, failed_op, write_atomically


def test_a_successful_write_lands_at_the_path_and_leaves_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "model.tflite"

    def write(staged: Path) -> None:
        staged.write_bytes(b"model")

    write_atomically(target, "TFLite", write)
    assert target.read_bytes() == b"model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def test_a_failed_write_names_the_op_and_leaves_nothing(tmp_path: Path) -> None:
    def half_write(staged: Path) -> None:
        staged.write_bytes(b"half")
        raise RuntimeError("no lowering for aten.grid_sampler_2d.default")

    with pytest.raises(EdgeExportError, match=r"TFLite export failed at aten\.grid_sampler_2d"):
        write_atomically(tmp_path / "model.tflite", "TFLite", half_write)
    assert list(tmp_path.iterdir()) == []


def test_failed_op_searches_the_causes_and_falls_back_to_the_error_type() -> None:
    outer = ValueError("lowering failed")
    outer.__cause__ = KeyError("aten.upsample_bicubic2d.vec")
    assert failed_op(outer) == "aten.upsample_bicubic2d"
    assert failed_op(TypeError("nothing named")) == "TypeError"
