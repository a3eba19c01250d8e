"""The PT2E quantiser of the full-integer int8 ``.tflite``: litert-torch's, with ReLU6 given its own range.

litert-torch's ``PT2EQuantizer`` fuses a convolution with a following ReLU (one
observer, after the ReLU) but not with ReLU6 (``hardtanh``), which EfficientNet-Lite
uses after every convolution but the projections: there the convolution's output is
observed before the clamp and ReLU6 shares that observer, so each int8 scale also
spans the negative values and those above 6 that ReLU6 throws away, and the values
kept get fewer of the 256 levels. On the flowers model that cost 3 to 4 points of
top-1 (docs/benchmarks.md, "The int8 drop"). Here a convolution whose only user is a
clamp is annotated as litert-torch annotates conv + ReLU: its inputs and weights
quantised, one observer on the clamp's output, which the converter folds into the
convolution's fused activation.

Imported only when an int8 file is written: it imports litert-torch (and jax).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from litert_torch.quantize import pt2e_quantizer
from litert_torch.quantize import pt2e_quantizer_utils as utils
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

_CONVOLUTIONS = (torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default)
_CLAMPS = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)
CONV_RELU6 = "conv_relu6"


def _annotated(nodes: list[Node]) -> bool:
    return any(node.meta.get("quantization_annotation", QuantizationAnnotation())._annotated for node in nodes)


def annotate_conv_relu6(
    model: GraphModule,
    config: utils.QuantizationConfig | None,
    filter_fn: Callable[[Node], bool] | None = None,
) -> list[list[Node]]:
    """Annotate every convolution followed only by a clamp (ReLU6) as one quantised operator; its partitions."""
    partitions = []
    for clamp in model.graph.nodes:
        if clamp.op != "call_function" or clamp.target not in _CLAMPS:
            continue
        conv = clamp.args[0]
        if not isinstance(conv, Node) or conv.target not in _CONVOLUTIONS or len(conv.users) != 1:
            continue
        inputs = {conv.args[0]: utils.get_input_act_qspec(config), conv.args[1]: utils.get_weight_qspec(config)}
        partition = [clamp, conv, conv.args[1]]
        bias = conv.args[2] if len(conv.args) > 2 else None
        if isinstance(bias, Node):
            inputs[bias] = utils.get_bias_qspec(config)
            partition.append(bias)
        if _annotated(partition) or (filter_fn is not None and not all(filter_fn(node) for node in partition)):
            continue
        conv.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
        clamp.meta["quantization_annotation"] = QuantizationAnnotation(
            output_qspec=utils.get_output_act_qspec(config), _annotated=True
        )
        for node in partition[2:]:
            node.meta.setdefault("quantization_annotation", QuantizationAnnotation())._annotated = True
        partitions.append(partition)
    return partitions


utils.register_annotator(CONV_RELU6)(annotate_conv_relu6)  # litert-torch's registry of pattern annotators


class TFLiteQuantizer(pt2e_quantizer.PT2EQuantizer):  # type: ignore[misc]
    """litert-torch's static quantiser with conv + ReLU6 annotated first, as conv + ReLU is."""

    STATIC_OPS: ClassVar[list[str]] = [CONV_RELU6, *pt2e_quantizer.PT2EQuantizer.STATIC_OPS]


def tflite_quantizer() -> TFLiteQuantizer:
    """Per-channel symmetric int8 weights, per-tensor affine int8 activations (histogram observers), static."""
    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    quantizer: TFLiteQuantizer = TFLiteQuantizer().set_global(config)
    return quantizer
