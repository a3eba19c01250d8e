"""Fixtures of the export tests: real digit images and one exported small model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autovision.export import export_model
from autovision.export.bundle import ExportedModel
from autovision.train.families import family_of
from tests.support.export import ARCHITECTURE, digit_images, small_model


@pytest.fixture(scope="package")
def images() -> torch.Tensor:
    return digit_images(40)


@pytest.fixture(scope="package")
def exported(tmp_path_factory: pytest.TempPathFactory, images: torch.Tensor) -> ExportedModel:
    """The small model exported with its 30 test images in two batches (the parity checks add them up)."""
    return export_model(
        small_model(0),
        family_of(ARCHITECTURE),
        [images[:16], images[16:30]],
        [images[30:]],
        tmp_path_factory.mktemp("export"),
    )


@pytest.fixture(scope="package")
def tflite_fp32(tmp_path_factory: pytest.TempPathFactory, images: torch.Tensor) -> Path:
    """The small model as an fp32 ``.tflite`` file with metadata (needs the edge extra)."""
    from autovision.export.tflite import export_tflite
    from tests.support.tflite import DIGIT_SPEC

    return export_tflite(small_model(0), images, DIGIT_SPEC, tmp_path_factory.mktemp("tflite") / "model.tflite")
