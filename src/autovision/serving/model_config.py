"""Triton ``config.pbtxt`` text from small typed parts (pure).

Written by hand rather than through ``model_config_pb2``: that module ships with
tritonclient, which the trainer (where repositories are written) does not install.
The tests parse every generated file with Triton's own ModelConfig schema.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum

from autovision.contract.keys import ONNX_FILE

# Short enough not to add visible latency, long enough for concurrent requests to meet.
MAX_QUEUE_DELAY_MICROSECONDS = 2000
# Requests a model's queue holds, in batches: beyond it Triton refuses at once (UNAVAILABLE,
# HTTP 503) instead of holding ever more encoded images in memory.
QUEUED_BATCHES = 2
# The ONNX file of a Triton model version: Triton's default_model_filename for the ONNX
# Runtime backend, which is also the name the run's export has.
TRITON_ONNX_FILE = ONNX_FILE

_MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class RepositoryError(ValueError):
    """The inputs cannot make a valid Triton model configuration or repository."""


class InstanceKind(StrEnum):
    """Where Triton runs a model's instances: KIND_GPU on GPU nodes, KIND_CPU elsewhere."""

    CPU = "KIND_CPU"
    GPU = "KIND_GPU"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor, dims without the batch dimension."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    label_filename: str | None = None


@dataclass(frozen=True)
class EnsembleStep:
    """One model of an ensemble: its tensors mapped to the ensemble's tensor names."""

    model_name: str
    input_map: dict[str, str] = field(default_factory=dict)
    output_map: dict[str, str] = field(default_factory=dict)


def validate_model_name(model_name: str) -> None:
    """Refuse names Triton would reject or that would escape the repository directory."""
    if not _MODEL_NAME_PATTERN.fullmatch(model_name):
        raise RepositoryError(
            f"model name {model_name!r} must start with a letter or digit and contain only "
            "letters, digits, '_', '.' and '-'"
        )


def preferred_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two up to max_batch_size, plus max_batch_size itself.

    The dynamic batcher then forms batches whose sizes the runtime sees again and again.
    """
    sizes = {max_batch_size}
    size = 2
    while size < max_batch_size:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def _quote(text: str) -> str:
    return json.dumps(text)  # a protobuf text-format string literal for the names used here


def _tensors(section: str, tensors: list[TensorSpec]) -> str:
    blocks = []
    for tensor in tensors:
        lines = [
            f"    name: {_quote(tensor.name)}",
            f"    data_type: {tensor.data_type}",
            f"    dims: [ {', '.join(str(d) for d in tensor.dims)} ]",
        ]
        if tensor.label_filename:
            lines.append(f"    label_filename: {_quote(tensor.label_filename)}")
        blocks.append("  {\n" + "\n".join(lines) + "\n  }")
    return f"{section} [\n" + ",\n".join(blocks) + "\n]\n"


def dynamic_batching(max_batch_size: int) -> str:
    """The dynamic_batching section: preferred sizes up to max_batch_size, a short queue delay, a bounded queue."""
    preferred = ", ".join(str(size) for size in preferred_batch_sizes(max_batch_size))
    return (
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {preferred} ]\n"
        f"  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_MICROSECONDS}\n"
        f"  default_queue_policy {{ max_queue_size: {QUEUED_BATCHES * max_batch_size} }}\n"
        "}\n"
    )


def instance_group(kind: InstanceKind, count: int = 1) -> str:
    """The instance_group section: ``count`` instances of one kind."""
    return f"instance_group [\n  {{\n    kind: {kind.value}\n    count: {count}\n  }}\n]\n"


def parameters(values: dict[str, str]) -> str:
    """The parameters section: string values the backend reads from its config."""
    entries = ",\n".join(
        f"  {{\n    key: {_quote(key)}\n    value: {{ string_value: {_quote(value)} }}\n  }}"
        for key, value in values.items()
    )
    return f"parameters [\n{entries}\n]\n"


def ensemble_scheduling(steps: list[EnsembleStep]) -> str:
    """The ensemble_scheduling section wiring the steps' tensors together."""

    def maps(kind: str, mapping: dict[str, str]) -> list[str]:
        return [f"      {kind} {{ key: {_quote(k)} value: {_quote(v)} }}" for k, v in mapping.items()]

    blocks = [
        "    {\n"
        + "\n".join(
            [
                f"      model_name: {_quote(step.model_name)}",
                "      model_version: -1",
                *maps("input_map", step.input_map),
                *maps("output_map", step.output_map),
            ]
        )
        + "\n    }"
        for step in steps
    ]
    return "ensemble_scheduling {\n  step [\n" + ",\n".join(blocks) + "\n  ]\n}\n"


def model_config(
    name: str,
    runtime: dict[str, str],
    max_batch_size: int,
    *,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    sections: list[str],
) -> str:
    """A whole config.pbtxt: name, runtime fields (backend or platform), I/O, then extra sections."""
    validate_model_name(name)
    if max_batch_size < 1:
        raise RepositoryError(f"max_batch_size must be at least 1, got {max_batch_size}")
    header = [f"name: {_quote(name)}", *(f"{key}: {_quote(value)}" for key, value in runtime.items())]
    header.append(f"max_batch_size: {max_batch_size}")
    return "\n".join(header) + "\n" + _tensors("input", inputs) + _tensors("output", outputs) + "".join(sections)
