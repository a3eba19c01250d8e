"""What a run's ONNX model takes and returns, read from the file, for the Triton configurations written
around it (pure apart from reading the file).

A run's model returns ``logits`` and, when exported with one, its embedding
(``EMBEDDING_OUTPUT``) second; a model exported before embeddings has logits only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.serving.model_config import RepositoryError


@dataclass(frozen=True)
class OnnxSignature:
    """The ONNX model's I/O names, its input dims, class count and embedding size after the batch (0 where
    symbolic); ``embedding_size`` is None for a model without an embedding output."""

    input_name: str
    output_name: str
    input_dims: tuple[int, ...]
    num_classes: int
    embedding_size: int | None = None


def read_onnx_signature(path: Path) -> OnnxSignature:
    """Read the I/O names the ONNX Runtime backend will match against config.pbtxt."""
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [tensor for tensor in graph.input if tensor.name not in initializers]
    outputs = list(graph.output)
    if len(inputs) != 1 or len(outputs) not in (1, 2):
        raise RepositoryError(
            f"{path} must have one input and one or two outputs, has {len(inputs)} and {len(outputs)}"
        )
    if len(outputs) == 2 and outputs[1].name != EMBEDDING_OUTPUT:
        raise RepositoryError(f"{path}'s second output must be {EMBEDDING_OUTPUT!r}, is {outputs[1].name!r}")
    input_dims = tuple(int(dim.dim_value) for dim in inputs[0].type.tensor_type.shape.dim[1:])

    def last_dim(output: onnx.ValueInfoProto) -> int:
        return int(output.type.tensor_type.shape.dim[-1].dim_value)

    return OnnxSignature(
        inputs[0].name,
        outputs[0].name,
        input_dims,
        last_dim(outputs[0]),
        last_dim(outputs[1]) if len(outputs) == 2 else None,
    )
