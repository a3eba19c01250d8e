"""Writer of the cluster Triton model repository, for NVIDIA's official Triton image.

An ensemble with the local layout's interface (model ``autovision``, encoded image
bytes in as ``IMAGE``, labelled ``SCORES`` out, and the ``embedding`` where the ONNX
model has one), built from three models::

    <out_dir>/autovision/config.pbtxt                ensemble: IMAGE -> SCORES (+ embedding), label_filename
                        /labels.txt
                        /1/.keep                     (object storage keeps no empty directories)
             /autovision_preprocess/config.pbtxt     Python backend, KIND_CPU: IMAGE -> PIXELS
                                   /1/model.py, backend_common.py, preprocess.py, preprocess.json
             /autovision_onnx/config.pbtxt           ONNX Runtime backend, KIND_GPU or KIND_CPU: logits (+ embedding)
                             /configs/cpu.pbtxt      the same with KIND_CPU  (--model-config-name=cpu)
                             /configs/gpu.pbtxt      the same with KIND_GPU  (--model-config-name=gpu)
                             /1/model.onnx
             /autovision_postprocess/config.pbtxt    Python backend, KIND_CPU: LOGITS -> SCORES
                                    /1/model.py, backend_common.py

Only the ONNX model runs on the GPU: decoding JPEGs and a softmax are CPU work. The
``configs/`` variants let one repository serve GPU and CPU node pools, chosen by the
server's ``--model-config-name`` flag instead of a rewrite. The Python backend's
environment in the serving image needs NumPy and Pillow (the official image ships
NumPy only).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.preprocess import PreprocessConfig
from autovision.serving.model_config import (
    TRITON_ONNX_FILE,
    EnsembleStep,
    InstanceKind,
    RepositoryError,
    TensorSpec,
    dynamic_batching,
    ensemble_scheduling,
    instance_group,
    model_config,
    parameters,
)
from autovision.serving.onnx_signature import OnnxSignature, read_onnx_signature
from autovision.serving.repository import (
    DEFAULT_DECODE_BUDGET,
    INPUT_NAME,
    OUTPUT_NAME,
    DecodeBudget,
    embedding_output,
    image_input,
    install_models,
    multi_label_parameter,
    require_file,
    scores_output,
    validate_labels,
    write_model_dir,
    write_python_backend,
)

PIXELS_NAME = "PIXELS"
LOGITS_NAME = "LOGITS"
BACKEND_PREPROCESS_SOURCE = Path(__file__).with_name("backend_preprocess.py")
BACKEND_POSTPROCESS_SOURCE = Path(__file__).with_name("backend_postprocess.py")
DEFAULT_MAX_BATCH_SIZE = 32


@dataclass(frozen=True)
class ClusterModels:
    """The names of the ensemble and its three steps, derived from the served model name."""

    ensemble: str

    @property
    def preprocess(self) -> str:
        """The Python-backend model that decodes and normalises images."""
        return f"{self.ensemble}_preprocess"

    @property
    def onnx(self) -> str:
        """The ONNX Runtime model that computes logits."""
        return f"{self.ensemble}_onnx"

    @property
    def postprocess(self) -> str:
        """The Python-backend model that turns logits into scores."""
        return f"{self.ensemble}_postprocess"


def check_signature(signature: OnnxSignature, num_labels: int, preprocess: PreprocessConfig) -> None:
    """The ONNX model must take what the preprocessing makes and score every label (symbolic dims pass)."""
    classes = signature.num_classes
    if classes not in (0, num_labels):
        raise RepositoryError(f"the ONNX model outputs {classes} classes but there are {num_labels} labels")
    made = (3, preprocess.size, preprocess.size)
    dims = signature.input_dims
    if len(dims) != len(made) or any(dim not in (0, size) for dim, size in zip(dims, made, strict=True)):
        raise RepositoryError(f"the ONNX model takes {dims} but the preprocessing makes {made}")


def cluster_configs(
    models: ClusterModels,
    num_labels: int,
    preprocess: PreprocessConfig,
    signature: OnnxSignature,
    *,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    multi_label: bool = False,
    instance_kind: InstanceKind = InstanceKind.GPU,
    budget: DecodeBudget = DEFAULT_DECODE_BUDGET,
) -> dict[str, str]:
    """Every config file of the layout, keyed by its path relative to the repository."""
    pixels = TensorSpec(PIXELS_NAME, "TYPE_FP32", (3, preprocess.size, preprocess.size))
    logits = TensorSpec(LOGITS_NAME, "TYPE_FP32", (num_labels,))
    scores = scores_output(num_labels)
    # The embedding goes from the ONNX model straight to the ensemble's output, under the same name.
    embedding = [] if signature.embedding_size is None else [embedding_output(signature.embedding_size)]

    def onnx_config(kind: InstanceKind) -> str:
        return model_config(
            models.onnx,
            {"platform": "onnxruntime_onnx"},
            max_batch_size,
            inputs=[TensorSpec(signature.input_name, pixels.data_type, pixels.dims)],
            outputs=[TensorSpec(signature.output_name, logits.data_type, logits.dims), *embedding],
            sections=[dynamic_batching(max_batch_size), instance_group(kind)],
        )

    cpu_sections = [dynamic_batching(max_batch_size), instance_group(InstanceKind.CPU)]
    steps = [
        EnsembleStep(models.preprocess, {INPUT_NAME: INPUT_NAME}, {PIXELS_NAME: "pixels"}),
        EnsembleStep(
            models.onnx,
            {signature.input_name: "pixels"},
            {signature.output_name: "logits", **{tensor.name: EMBEDDING_OUTPUT for tensor in embedding}},
        ),
        EnsembleStep(models.postprocess, {LOGITS_NAME: "logits"}, {OUTPUT_NAME: OUTPUT_NAME}),
    ]
    return {
        f"{models.ensemble}/config.pbtxt": model_config(
            models.ensemble,
            {"platform": "ensemble"},
            max_batch_size,
            inputs=[image_input()],
            outputs=[scores, *embedding],
            sections=[ensemble_scheduling(steps)],
        ),
        f"{models.preprocess}/config.pbtxt": model_config(
            models.preprocess,
            {"backend": "python"},
            max_batch_size,
            inputs=[image_input()],
            outputs=[pixels],
            sections=[
                dynamic_batching(max_batch_size),
                instance_group(InstanceKind.CPU, budget.instances()),
                parameters(budget.parameters()),
            ],
        ),
        f"{models.onnx}/config.pbtxt": onnx_config(instance_kind),
        f"{models.onnx}/configs/cpu.pbtxt": onnx_config(InstanceKind.CPU),
        f"{models.onnx}/configs/gpu.pbtxt": onnx_config(InstanceKind.GPU),
        f"{models.postprocess}/config.pbtxt": model_config(
            models.postprocess,
            {"backend": "python"},
            max_batch_size,
            inputs=[logits],
            outputs=[TensorSpec(OUTPUT_NAME, scores.data_type, scores.dims)],
            sections=[*cpu_sections, parameters(multi_label_parameter(multi_label))],
        ),
    }


def write_cluster_repository(
    out_dir: Path,
    onnx_path: Path,
    labels: list[str],
    preprocess: PreprocessConfig,
    *,
    model_name: str = "autovision",
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    multi_label: bool = False,
    instance_kind: InstanceKind = InstanceKind.GPU,
    budget: DecodeBudget = DEFAULT_DECODE_BUDGET,
) -> dict[str, Path]:
    """Write (or replace) the ensemble and its three models in ``out_dir``; return their directories."""
    validate_labels(labels)
    require_file(onnx_path, "ONNX model")
    signature = read_onnx_signature(onnx_path)
    check_signature(signature, len(labels), preprocess)
    models = ClusterModels(model_name)
    configs = cluster_configs(
        models,
        len(labels),
        preprocess,
        signature,
        max_batch_size=max_batch_size,
        multi_label=multi_label,
        instance_kind=instance_kind,
        budget=budget,
    )

    def config_of(model: str) -> str:
        return configs[f"{model}/config.pbtxt"]

    def write_ensemble(model_dir: Path) -> None:
        version_dir = write_model_dir(model_dir, config_of(models.ensemble), labels)
        (version_dir / ".keep").write_text("Triton needs this version directory to exist.\n", encoding="utf-8")

    def write_preprocess(model_dir: Path) -> None:
        write_model_dir(model_dir, config_of(models.preprocess))
        write_python_backend(model_dir, BACKEND_PREPROCESS_SOURCE, preprocess)

    def write_onnx(model_dir: Path) -> None:
        version_dir = write_model_dir(model_dir, config_of(models.onnx))
        (model_dir / "configs").mkdir()
        for kind in ("cpu", "gpu"):
            (model_dir / "configs" / f"{kind}.pbtxt").write_text(
                configs[f"{models.onnx}/configs/{kind}.pbtxt"], encoding="utf-8"
            )
        shutil.copyfile(onnx_path, version_dir / TRITON_ONNX_FILE)

    def write_postprocess(model_dir: Path) -> None:
        write_model_dir(model_dir, config_of(models.postprocess))
        write_python_backend(model_dir, BACKEND_POSTPROCESS_SOURCE, None)

    return install_models(
        out_dir,
        {
            models.ensemble: write_ensemble,
            models.preprocess: write_preprocess,
            models.onnx: write_onnx,
            models.postprocess: write_postprocess,
        },
    )
