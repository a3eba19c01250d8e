"""Core ML: the converted spec's image input, outputs and labels (its predictions need macOS)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("coremltools", reason="the edge extra is not installed (docs/edge.md)")

from autovision.export.coreml import LABEL_OUTPUT, PROBABILITIES_OUTPUT, export_coreml, read_coreml_spec
from autovision.export.edge_files import EdgeExportError
from tests.support.export import small_model
from tests.support.tflite import DIGIT_SPEC

pytestmark = pytest.mark.training


def test_the_package_declares_an_image_input_the_class_outputs_and_the_labels(tmp_path: Path) -> None:
    path = export_coreml(small_model(0), DIGIT_SPEC, tmp_path / "model.mlpackage")
    spec = read_coreml_spec(path)
    assert spec.input_name == "image"
    assert spec.input_size == (16, 16)
    assert set(spec.outputs) == {LABEL_OUTPUT, PROBABILITIES_OUTPUT}
    assert spec.labels == DIGIT_SPEC.labels
    assert [p.name for p in tmp_path.iterdir()] == ["model.mlpackage"]


def test_a_failed_conversion_leaves_no_package(tmp_path: Path) -> None:
    wrong_labels = DIGIT_SPEC.__class__(labels=("a", "b"), size=16, mean=DIGIT_SPEC.mean, std=DIGIT_SPEC.std)
    with pytest.raises(EdgeExportError, match="Core ML export failed"):
        export_coreml(small_model(0), wrong_labels, tmp_path / "model.mlpackage")
    assert list(tmp_path.iterdir()) == []
