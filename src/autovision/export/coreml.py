"""Core ML export (an ``.mlpackage`` image classifier) and its spec read back.

coremltools converts on Linux but its runtime predicts only on macOS, so what is
checked here is the converted spec: its image input, its class outputs and labels.
Its predictions are not checked here. The package takes an RGB image; the
training normalisation and a softmax sit inside the model, so an iOS app hands
it a camera frame and reads ``classLabel`` and ``classLabel_probs``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autovision.export.edge_files import EdgeInput, write_atomically

INPUT_NAME = "image"
LABEL_OUTPUT = "classLabel"
PROBABILITIES_OUTPUT = "classLabel_probs"
# The package's metadata key holding labels, size, mean and std as JSON.
PREPROCESSING_KEY = "autovision.preprocessing"


class _ImageClassifier(nn.Module):
    """The trained model behind the training normalisation (0..1 RGB in) and a softmax."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module, spec: EdgeInput) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model((images - self.mean) / self.std)
        return torch.softmax(logits, dim=1)


def export_coreml(model: nn.Module, spec: EdgeInput, path: Path) -> Path:
    """Write an ``.mlpackage`` classifier (iOS 15+) with its labels; raise ``EdgeExportError`` naming the op."""
    import coremltools as ct

    def write(staged: Path) -> None:
        wrapped = _ImageClassifier(model.eval(), spec).eval()
        example = torch.rand(1, 3, spec.size, spec.size)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapped, example)  # type: ignore[no-untyped-call]
            converted = ct.convert(
                traced,
                inputs=[ct.ImageType(name=INPUT_NAME, shape=example.shape, scale=1 / 255.0, color_layout="RGB")],
                classifier_config=ct.ClassifierConfig(list(spec.labels)),
                convert_to="mlprogram",
                minimum_deployment_target=ct.target.iOS15,
            )
        converted.user_defined_metadata[PREPROCESSING_KEY] = json.dumps(
            {"labels": list(spec.labels), "size": spec.size, "mean": list(spec.mean), "std": list(spec.std)}
        )
        converted.save(str(staged))

    return write_atomically(path, "Core ML", write)


@dataclass(frozen=True)
class CoreMLSpec:
    """What a converted package declares: its image input, its outputs and its class labels."""

    input_name: str
    input_size: tuple[int, int]
    outputs: tuple[str, ...]
    labels: tuple[str, ...]


def read_coreml_spec(path: Path) -> CoreMLSpec:
    """The package's declared interface, read from its spec (no macOS runtime needed)."""
    import coremltools as ct

    spec: Any = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    image = spec.description.input[0]
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    classify = next(op for op in block.operations if op.type == "classify")
    classes = classify.inputs["classes"].arguments[0].value.immediateValue.list.values
    return CoreMLSpec(
        input_name=image.name,
        input_size=(int(image.type.imageType.height), int(image.type.imageType.width)),
        outputs=tuple(output.name for output in spec.description.output),
        labels=tuple(str(value.immediateValue.tensor.strings.values[0]) for value in classes),
    )
