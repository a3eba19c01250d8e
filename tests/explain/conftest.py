"""The trained models the explanation tests explain: tiny, single-threaded, trained once per session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from autovision.explain.trust_data import PatchImages, fit, patch_images, shuffled_digits
from autovision.train.families.residual_cnn import ResidualCNNConfig, build_residual_cnn

# 64 px in, a stride-2 stem, three stages: the last stage is 8x8 (Grad-CAM needs at least 4x4).
PATCH_ARCHITECTURE = ResidualCNNConfig(width=4, stages=3, stem_stride=2)
DIGITS_ARCHITECTURE = ResidualCNNConfig(width=8, stages=2)
PATCH_TRAIN = 256


@dataclass(frozen=True)
class Trained:
    """A trained model, its architecture's description and held-out inputs with their labels."""

    model: nn.Module
    architecture: dict[str, object]
    inputs: torch.Tensor
    labels: torch.Tensor


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine, several threads per test process slow tiny models ~5x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def patches() -> PatchImages:
    """The localisation data: 256 to train on, 32 held out."""
    return patch_images(PATCH_TRAIN + 32, size=64, patch=12, seed=0)


@pytest.fixture(scope="session")
def patch_model(patches: PatchImages, one_thread: None) -> Trained:
    """A residual CNN that finds the patch (3 epochs: about 100% held-out accuracy, ~5 s)."""
    torch.manual_seed(0)
    model = fit(
        build_residual_cnn(PATCH_ARCHITECTURE, 2), patches.inputs[:PATCH_TRAIN], patches.labels[:PATCH_TRAIN], 3
    )
    held_out = slice(PATCH_TRAIN, None)
    return Trained(model, PATCH_ARCHITECTURE.describe(), patches.inputs[held_out], patches.labels[held_out])


@pytest.fixture(scope="session")
def digits_model(one_thread: None) -> Trained:
    """A residual CNN on 1,000 bundled digits at 16 px (6 epochs: ~80% on 200 held out, ~6 s)."""
    inputs, labels = shuffled_digits(16)
    torch.manual_seed(0)
    model = fit(build_residual_cnn(DIGITS_ARCHITECTURE, 10), inputs[:1000], labels[:1000], 6)
    return Trained(model, DIGITS_ARCHITECTURE.describe(), inputs[1000:1200], labels[1000:1200])
