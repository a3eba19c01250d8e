"""TFLite metadata and the attached label file, written without tflite-support and read back."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

pytest.importorskip("ai_edge_litert", reason="the edge extra is not installed (docs/edge.md)")

from autovision.export.edge_files import EdgeInput
from autovision.export.tflite_metadata import LABELS_FILE, METADATA_IDENTIFIER, metadata_flatbuffer, read_metadata

SPEC = EdgeInput(labels=("cat", "dog", "fox"), size=24, mean=(0.5, 0.25, 0.125), std=(0.25, 0.5, 1.0))


def test_the_metadata_is_a_model_metadata_flatbuffer() -> None:
    assert metadata_flatbuffer(SPEC, "classifier")[4:8] == METADATA_IDENTIFIER


def test_a_tflite_file_carries_labels_size_and_normalisation(tflite_fp32: Path) -> None:
    spec = read_metadata(tflite_fp32)
    assert spec.labels == tuple(str(digit) for digit in range(10))
    assert spec.size == 16
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406), rel=1e-6)
    assert spec.std == pytest.approx((0.229, 0.224, 0.225), rel=1e-6)
    with zipfile.ZipFile(tflite_fp32) as archive:
        assert archive.read(LABELS_FILE).decode().splitlines() == list(spec.labels)
