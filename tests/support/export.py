"""Small models and real images for the export tests: the bundled digits and a tiny residual CNN."""

from __future__ import annotations

import io
import zipfile

import torch

from autovision.data.digits import digits_zip_bytes
from autovision.preprocess import PreprocessConfig, preprocess_batch
from autovision.train.families.residual_cnn import ResidualCNNConfig, build_residual_cnn

ARCHITECTURE = ResidualCNNConfig(width=4, stages=2)


def digit_images(count: int) -> torch.Tensor:
    """The first ``count`` bundled digits, preprocessed as training would (16x16)."""
    with zipfile.ZipFile(io.BytesIO(digits_zip_bytes())) as archive:
        images = [archive.read(name) for name in sorted(archive.namelist())[:count]]
    return torch.from_numpy(preprocess_batch(images, PreprocessConfig(size=16)))


def small_model(seed: int) -> torch.nn.Module:
    """A tiny untrained residual CNN, the same for the same seed."""
    torch.manual_seed(seed)
    return build_residual_cnn(ARCHITECTURE, num_classes=10).eval()
