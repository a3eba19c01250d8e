"""The edge example classifies an image with the ``.tflite`` file alone, as the interpreter does."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("litert_torch", reason="the edge extra is not installed (docs/edge.md)")

from autovision.data.digits import digits_zip_bytes
from autovision.export.tflite import export_tflite, tflite_logits
from autovision.preprocess import PreprocessConfig, preprocess_batch
from tests.support.export import digit_images, small_model
from tests.support.tflite import DIGIT_SPEC

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "classify_tflite.py"


@pytest.mark.training
def test_the_example_prints_the_interpreters_top_label_from_the_attached_label_file(tmp_path: Path) -> None:
    model = export_tflite(small_model(0), digit_images(1), DIGIT_SPEC, tmp_path / "model.tflite")
    with zipfile.ZipFile(io.BytesIO(digits_zip_bytes())) as archive:
        name = sorted(archive.namelist())[0]
        (tmp_path / "digit.png").write_bytes(archive.read(name))
    expected = tflite_logits(model, preprocess_batch([(tmp_path / "digit.png").read_bytes()], PreprocessConfig(16)))
    result = subprocess.run(
        [sys.executable, "-I", str(EXAMPLE), str(model), str(tmp_path / "digit.png"), "--top", "1"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split("\t")[0] == DIGIT_SPEC.labels[int(expected.argmax())]
