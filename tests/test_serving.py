"""Serving: config.pbtxt, the repository writer, the backend model, and a real tritonserver.

The end-to-end tests start the tritonserver binary shipped in nvidia-pytriton once per
module and check that what it serves equals ONNX Runtime run directly on
``preprocess_bytes`` output: serving uses the project's one preprocessing definition.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format  # type: ignore[import-untyped]
from google.protobuf.json_format import MessageToJson  # type: ignore[import-untyped]
from onnx import TensorProto, helper
from PIL import Image
from tritonclient.grpc import model_config_pb2

import autovision.preprocess
from autovision.preprocess import PreprocessConfig, preprocess_batch, preprocess_bytes
from autovision.serving import (
    LocalTritonServer,
    PredictionError,
    RepositoryError,
    TritonServerError,
    build_config_pbtxt,
    predict,
    write_local_repository,
)
from autovision.serving.batch import BatchOptions, parse_csv_uris, prediction_record, shard_key
from autovision.serving.client import Protocol
from autovision.serving.cluster import write_cluster_repository
from autovision.serving.model_config import InstanceKind
from autovision.serving.tritonserver import free_ports, pytriton_tritonserver_dir, summarize_log

LABELS = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
PREPROCESS = PreprocessConfig(size=24)
TOP_K = 3
PROTOCOLS = ["http", "grpc"]


# --- helpers -----------------------------------------------------------------------


def make_onnx_classifier(path: Path, num_labels: int, seed: int = 0) -> Path:
    """GlobalAveragePool -> Flatten -> Gemm with fixed random weights, dynamic batch."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 3.0, size=(3, num_labels)).astype(np.float32)
    bias = rng.normal(0.0, 0.5, size=num_labels).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["features"]),
            helper.make_node("Gemm", ["features", "weights", "bias"], ["logits"]),
        ],
        "tiny_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, None, None])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_labels])],
        initializer=[
            onnx.numpy_helper.from_array(weights, "weights"),
            onnx.numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def encode_image(fmt: str, seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    """A seeded colour gradient with noise, not square, so resizing matters."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, size=3)
    ramp = np.linspace(-60, 60, size[0])[None, :, None]
    noise = rng.normal(0, 20, size=(size[1], size[0], 3))
    pixels = np.clip(base + ramp + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True), dtype=np.float32)


def reference_top_k(onnx_path: Path, image: bytes) -> list[tuple[str, float]]:
    """What the model predicts run directly, outside Triton, on the shared preprocessing."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    batch = preprocess_bytes(image, PREPROCESS)[None]
    scores = softmax(session.run(["logits"], {"input": batch})[0])[0]
    best = np.argsort(-scores)[:TOP_K]
    return [(LABELS[i], float(scores[i])) for i in best]


def tritonserver_unavailable() -> str | None:
    """Why the tritonserver binary cannot run here, or None when it can."""
    try:
        binary = pytriton_tritonserver_dir() / "bin" / "tritonserver"
    except TritonServerError as error:
        return str(error)
    if not sys.platform.startswith("linux"):
        return "nvidia-pytriton's tritonserver runs on Linux only"
    return None if binary.is_file() else f"{binary} is missing"


TRITONSERVER_UNAVAILABLE = tritonserver_unavailable()
needs_tritonserver = pytest.mark.skipif(TRITONSERVER_UNAVAILABLE is not None, reason=TRITONSERVER_UNAVAILABLE or "")


# --- config.pbtxt ------------------------------------------------------------------


def parse_config(text: str) -> Any:
    """Parse with Triton's own ModelConfig schema: the text must be valid for Triton."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_config_declares_bytes_in_and_labelled_scores_out() -> None:
    config = parse_config(build_config_pbtxt("flowers", 5, 16, multi_label=False))

    assert config.name == "flowers"
    assert config.backend == "python"
    assert config.max_batch_size == 16
    (image,) = config.input
    assert (image.name, image.data_type, list(image.dims)) == (
        "IMAGE",
        model_config_pb2.TYPE_STRING,
        [1],
    )
    (scores,) = config.output
    assert (scores.name, scores.data_type, list(scores.dims)) == (
        "SCORES",
        model_config_pb2.TYPE_FP32,
        [5],
    )
    assert scores.label_filename == "labels.txt"
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    (group,) = config.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert config.parameters["multi_label"].string_value == "false"


def test_config_marks_multi_label_and_odd_batch_sizes() -> None:
    config = parse_config(build_config_pbtxt("m", 2, 12, multi_label=True))

    assert config.parameters["multi_label"].string_value == "true"
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8, 12]
    assert list(parse_config(build_config_pbtxt("m", 2, 1, False)).dynamic_batching.preferred_batch_size) == [1]


@pytest.mark.parametrize(
    ("name", "num_labels", "max_batch_size", "message"),
    [
        ("bad name", 3, 8, "model name"),
        ("../escape", 3, 8, "model name"),
        ("ok", 0, 8, "at least one label"),
        ("ok", 3, 0, "max_batch_size"),
    ],
)
def test_config_rejects_invalid_input(name: str, num_labels: int, max_batch_size: int, message: str) -> None:
    with pytest.raises(RepositoryError, match=message):
        build_config_pbtxt(name, num_labels, max_batch_size, multi_label=False)


def test_config_instance_kind_is_a_parameter() -> None:
    gpu = parse_config(build_config_pbtxt("m", 2, 4, False, instance_kind=InstanceKind.GPU))

    assert [group.kind for group in gpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]


# --- repository writer -------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_onnx_classifier(tmp_path_factory.mktemp("onnx") / "model.onnx", len(LABELS))


def test_repository_layout(tmp_path: Path, onnx_path: Path) -> None:
    model_dir = write_local_repository(tmp_path / "repo", onnx_path, LABELS, PREPROCESS)

    assert model_dir == (tmp_path / "repo" / "autovision").resolve()
    assert sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*")) == [
        "1",
        "1/backend_common.py",
        "1/model.onnx",
        "1/model.py",
        "1/preprocess.json",
        "1/preprocess.py",
        "config.pbtxt",
        "labels.txt",
    ]
    shipped = (model_dir / "1" / "preprocess.py").read_bytes()
    assert shipped == Path(autovision.preprocess.__file__).read_bytes()
    assert (model_dir / "labels.txt").read_text().splitlines() == LABELS
    saved = (model_dir / "1" / "preprocess.json").read_text()
    assert PreprocessConfig.from_json(saved) == PREPROCESS
    assert (model_dir / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()
    assert "class TritonPythonModel" in (model_dir / "1" / "model.py").read_text()
    assert parse_config((model_dir / "config.pbtxt").read_text()).output[0].dims == [5]


def test_repository_replaces_existing_model_and_leaves_no_staging(tmp_path: Path, onnx_path: Path) -> None:
    repo = tmp_path / "repo"
    write_local_repository(repo, onnx_path, LABELS, PREPROCESS)
    (repo / "autovision" / "stale.txt").write_text("from the old version")

    model_dir = write_local_repository(repo, onnx_path, ["a", "b"], PREPROCESS)

    assert not (model_dir / "stale.txt").exists()
    assert (model_dir / "labels.txt").read_text() == "a\nb\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    assert sorted(p.name for p in repo.iterdir()) == ["autovision"]


def test_failed_write_keeps_the_previous_model(tmp_path: Path, onnx_path: Path) -> None:
    repo = tmp_path / "repo"
    write_local_repository(repo, onnx_path, LABELS, PREPROCESS)
    before = (repo / "autovision" / "config.pbtxt").read_text()

    with pytest.raises(RepositoryError, match="does not exist"):
        write_local_repository(repo, tmp_path / "missing.onnx", LABELS, PREPROCESS)
    with pytest.raises(RepositoryError, match="unique"):
        write_local_repository(repo, onnx_path, ["a", "a"], PREPROCESS)

    assert (repo / "autovision" / "config.pbtxt").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


# --- the backend model.py, with a stand-in for triton_python_backend_utils --------


@dataclass
class FakeTensor:
    tensor_name: str
    array: npt.NDArray[Any]

    def as_numpy(self) -> npt.NDArray[Any]:
        return self.array


@dataclass
class FakeTritonError:
    message: str
    code: str = "INTERNAL"
    INVALID_ARG = "INVALID_ARG"
    INTERNAL = "INTERNAL"


@dataclass
class FakeResponse:
    output_tensors: list[FakeTensor] = field(default_factory=list)
    error: FakeTritonError | None = None


def fake_request(*images: bytes) -> dict[str, FakeTensor]:
    array = np.array([[image] for image in images], dtype=np.object_)
    return {"IMAGE": FakeTensor("IMAGE", array)}


FAKE_PB_UTILS = SimpleNamespace(
    Tensor=FakeTensor,
    TritonError=FakeTritonError,
    InferenceResponse=FakeResponse,
    get_input_tensor_by_name=lambda request, name: request[name],
)


def load_backend_module(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import a written model.py the way Triton's stub does."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", FAKE_PB_UTILS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"autovision_backend_under_test_{model_dir.name}"
    spec = importlib.util.spec_from_file_location(name, model_dir / "1" / "model.py")
    assert spec is not None
    assert spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def load_backend(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Import a written model.py the way Triton's stub does, and initialize it."""
    model = load_backend_module(model_dir, monkeypatch).TritonPythonModel()
    config = parse_config((model_dir / "config.pbtxt").read_text())
    model.initialize(
        {
            "model_config": MessageToJson(config, preserving_proto_field_name=True),
            "model_repository": str(model_dir),
            "model_version": "1",
        }
    )
    return model


class CountingSession:
    """An ONNX Runtime session that records the batch size of every run."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.batch_sizes: list[int] = []

    def run(self, outputs: list[str], feed: dict[str, npt.NDArray[np.float32]]) -> Any:
        self.batch_sizes.append(len(feed["input"]))
        return self.session.run(outputs, feed)


@pytest.fixture
def clean_backend_imports() -> Iterator[None]:
    """Forget the repository's sibling modules, which the backends import by bare name."""
    yield
    for name in ("preprocess", "backend_common"):
        sys.modules.pop(name, None)


@pytest.mark.usefixtures("clean_backend_imports")
@pytest.mark.parametrize("multi_label", [False, True])
def test_backend_batches_requests_and_isolates_bad_images(
    tmp_path: Path, onnx_path: Path, monkeypatch: pytest.MonkeyPatch, multi_label: bool
) -> None:
    model_dir = write_local_repository(tmp_path, onnx_path, LABELS, PREPROCESS, multi_label=multi_label)
    model = load_backend(model_dir, monkeypatch)
    model._session = counting = CountingSession(model._session)
    images = [encode_image("PNG", 1), encode_image("JPEG", 2), encode_image("PNG", 3)]

    responses = model.execute(
        [fake_request(images[0], images[1]), fake_request(b"not an image"), fake_request(images[2])]
    )

    assert counting.batch_sizes == [3], "all good images of all requests go through one session.run"
    assert responses[1].error.code == "INVALID_ARG"
    assert "IMAGE[0] is not a decodable image" in responses[1].error.message
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": preprocess_batch(images, PREPROCESS)})[0]
    expected = 1 / (1 + np.exp(-logits)) if multi_label else softmax(logits)
    served = np.concatenate([r.output_tensors[0].array for r in (responses[0], responses[2])])
    assert responses[0].error is None
    assert responses[2].error is None
    np.testing.assert_allclose(served, expected, atol=1e-6)


# --- the cluster layout: an ensemble for NVIDIA's official Triton image ----------

CLUSTER_MODELS = ["autovision", "autovision_onnx", "autovision_postprocess", "autovision_preprocess"]


@pytest.fixture
def cluster_dirs(tmp_path: Path, onnx_path: Path) -> dict[str, Path]:
    return write_cluster_repository(tmp_path / "cluster", onnx_path, LABELS, PREPROCESS, max_batch_size=8)


def cluster_config(model_dir: Path, name: str = "config.pbtxt") -> Any:
    return parse_config((model_dir / name).read_text())


def test_cluster_layout_files(cluster_dirs: dict[str, Path], onnx_path: Path) -> None:
    repository = cluster_dirs["autovision"].parent

    assert sorted(p.name for p in repository.iterdir()) == CLUSTER_MODELS
    assert sorted(p.name for p in repository.parent.iterdir()) == ["cluster"], "no staging left behind"
    files = sorted(str(p.relative_to(repository)) for p in repository.rglob("*") if p.is_file())
    assert files == [
        "autovision/1/.keep",
        "autovision/config.pbtxt",
        "autovision/labels.txt",
        "autovision_onnx/1/model.onnx",
        "autovision_onnx/config.pbtxt",
        "autovision_onnx/configs/cpu.pbtxt",
        "autovision_onnx/configs/gpu.pbtxt",
        "autovision_postprocess/1/backend_common.py",
        "autovision_postprocess/1/model.py",
        "autovision_postprocess/config.pbtxt",
        "autovision_preprocess/1/backend_common.py",
        "autovision_preprocess/1/model.py",
        "autovision_preprocess/1/preprocess.json",
        "autovision_preprocess/1/preprocess.py",
        "autovision_preprocess/config.pbtxt",
    ]
    assert (repository / "autovision_onnx/1/model.onnx").read_bytes() == onnx_path.read_bytes()
    shipped = (repository / "autovision_preprocess/1/preprocess.py").read_bytes()
    assert shipped == Path(autovision.preprocess.__file__).read_bytes()
    assert (repository / "autovision/labels.txt").read_text().splitlines() == LABELS


def test_cluster_ensemble_has_the_local_interface(
    cluster_dirs: dict[str, Path], tmp_path: Path, onnx_path: Path
) -> None:
    ensemble = cluster_config(cluster_dirs["autovision"])
    local = parse_config(build_config_pbtxt("autovision", len(LABELS), 8, multi_label=False))

    assert ensemble.platform == "ensemble"
    assert ensemble.max_batch_size == local.max_batch_size
    assert list(ensemble.input) == list(local.input)
    assert list(ensemble.output) == list(local.output), "IMAGE bytes in, SCORES with label_filename out"
    assert not ensemble.HasField("dynamic_batching"), "composing models batch, ensembles may not"


def test_cluster_ensemble_steps_are_wired_to_their_models(cluster_dirs: dict[str, Path]) -> None:
    ensemble = cluster_config(cluster_dirs["autovision"])
    configs = {name: cluster_config(path) for name, path in cluster_dirs.items()}
    # Each ensemble tensor: its (data_type, dims), starting from the ensemble's inputs.
    tensors = {t.name: (t.data_type, list(t.dims)) for t in ensemble.input}

    for step in ensemble.ensemble_scheduling.step:
        composing = configs[step.model_name]
        assert composing.max_batch_size == ensemble.max_batch_size
        inputs = {t.name: (t.data_type, list(t.dims)) for t in composing.input}
        outputs = {t.name: (t.data_type, list(t.dims)) for t in composing.output}
        assert set(step.input_map) == set(inputs), step.model_name
        for model_tensor, ensemble_tensor in step.input_map.items():
            assert tensors[ensemble_tensor] == inputs[model_tensor], (step.model_name, model_tensor)
        for model_tensor, ensemble_tensor in step.output_map.items():
            tensors[ensemble_tensor] = outputs[model_tensor]

    assert [step.model_name for step in ensemble.ensemble_scheduling.step] == [
        "autovision_preprocess",
        "autovision_onnx",
        "autovision_postprocess",
    ]
    (scores,) = ensemble.output
    assert tensors[scores.name] == (scores.data_type, list(scores.dims))
    assert configs["autovision_preprocess"].output[0].dims == [3, PREPROCESS.size, PREPROCESS.size]
    assert configs["autovision_postprocess"].parameters["multi_label"].string_value == "false"


def test_cluster_models_batch_and_run_where_they_should(cluster_dirs: dict[str, Path]) -> None:
    kinds = model_config_pb2.ModelInstanceGroup
    onnx_dir = cluster_dirs["autovision_onnx"]
    onnx_config = cluster_config(onnx_dir)

    assert onnx_config.platform == "onnxruntime_onnx"
    assert (onnx_config.input[0].name, onnx_config.output[0].name) == ("input", "logits")
    assert [g.kind for g in onnx_config.instance_group] == [kinds.KIND_GPU]
    assert [g.kind for g in cluster_config(onnx_dir, "configs/cpu.pbtxt").instance_group] == [kinds.KIND_CPU]
    assert [g.kind for g in cluster_config(onnx_dir, "configs/gpu.pbtxt").instance_group] == [kinds.KIND_GPU]
    for name in ("autovision_preprocess", "autovision_postprocess"):
        assert [g.kind for g in cluster_config(cluster_dirs[name]).instance_group] == [kinds.KIND_CPU], name
    for name in ("autovision_preprocess", "autovision_onnx", "autovision_postprocess"):
        batching = cluster_config(cluster_dirs[name]).dynamic_batching
        assert list(batching.preferred_batch_size) == [2, 4, 8], name
        assert batching.max_queue_delay_microseconds > 0


def test_cluster_instance_kind_cpu_and_mismatched_onnx_models(tmp_path: Path, onnx_path: Path) -> None:
    cpu = write_cluster_repository(tmp_path / "cpu", onnx_path, LABELS, PREPROCESS, instance_kind=InstanceKind.CPU)
    kinds = [g.kind for g in cluster_config(cpu["autovision_onnx"]).instance_group]
    assert kinds == [model_config_pb2.ModelInstanceGroup.KIND_CPU]

    with pytest.raises(RepositoryError, match="outputs 5 classes but there are 2 labels"):
        write_cluster_repository(tmp_path / "bad", onnx_path, ["a", "b"], PREPROCESS)
    assert not (tmp_path / "bad").exists()
    static = make_onnx_classifier(tmp_path / "static.onnx", len(LABELS))
    model = onnx.load(static)
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], (32, 32), strict=True):
        dim.dim_value = value
    onnx.save(model, static)
    with pytest.raises(RepositoryError, match=r"takes \(3, 32, 32\) but the preprocessing makes \(3, 24, 24\)"):
        write_cluster_repository(tmp_path / "bad", static, LABELS, PREPROCESS)


@pytest.mark.usefixtures("clean_backend_imports")
@pytest.mark.parametrize("multi_label", [False, True])
def test_cluster_steps_compute_what_the_local_model_serves(
    tmp_path: Path, onnx_path: Path, monkeypatch: pytest.MonkeyPatch, multi_label: bool
) -> None:
    """preprocess -> ONNX Runtime (what the onnxruntime backend runs) -> postprocess equals the local model."""
    local = load_backend(
        write_local_repository(tmp_path / "local", onnx_path, LABELS, PREPROCESS, multi_label=multi_label), monkeypatch
    )
    cluster = write_cluster_repository(tmp_path / "cluster", onnx_path, LABELS, PREPROCESS, multi_label=multi_label)
    preprocess_model = load_backend(cluster["autovision_preprocess"], monkeypatch)
    postprocess_model = load_backend(cluster["autovision_postprocess"], monkeypatch)
    session = ort.InferenceSession(str(cluster["autovision_onnx"] / "1" / "model.onnx"))
    requests = [
        fake_request(encode_image("PNG", 20), encode_image("JPEG", 21)),
        fake_request(b"not an image"),
        fake_request(encode_image("PNG", 22)),
    ]

    expected = local.execute(requests)
    pixels = preprocess_model.execute(requests)
    good = [0, 2]
    logits = [session.run(["logits"], {"input": pixels[i].output_tensors[0].array})[0] for i in good]
    scores = postprocess_model.execute([{"LOGITS": FakeTensor("LOGITS", array)} for array in logits])

    assert pixels[1].error.code == "INVALID_ARG"
    assert pixels[1].error.message == expected[1].error.message
    assert [pixels[i].output_tensors[0].tensor_name for i in good] == ["PIXELS", "PIXELS"]
    for response, index in zip(scores, good, strict=True):
        assert response.output_tensors[0].tensor_name == "SCORES"
        np.testing.assert_allclose(response.output_tensors[0].array, expected[index].output_tensors[0].array, atol=1e-6)


@pytest.mark.usefixtures("clean_backend_imports")
def test_local_backend_uses_cpu_unless_a_gpu_instance_has_cuda(
    tmp_path: Path, onnx_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_backend_module(write_local_repository(tmp_path, onnx_path, LABELS, PREPROCESS), monkeypatch)

    assert module.execution_providers({"model_instance_kind": "CPU"}) == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    gpu = module.execution_providers({"model_instance_kind": "GPU", "model_instance_device_id": "1"})
    assert gpu == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]


# --- batch prediction's pure parts --------------------------------------------------


def test_batch_csv_lists_first_column_relative_to_the_csv() -> None:
    text = "uri,label\nimages/a.png,cat\n\n s3://other/b.jpg \n/abs/c.png\nuri.png\n"

    assert parse_csv_uris(text, "s3://bucket/jobs/list.csv") == [
        "s3://bucket/jobs/images/a.png",
        "s3://other/b.jpg",
        "/abs/c.png",
        "s3://bucket/jobs/uri.png",
    ]
    assert parse_csv_uris("a.png\n", "/data/list.csv") == ["/data/a.png"], "no header: the first row is an image"


def test_batch_record_holds_top_k_above_the_threshold() -> None:
    scores = np.array([0.1, 0.6, 0.05, 0.25], dtype=np.float32)

    record = prediction_record("u", scores, ["a", "b", "c", "d"], BatchOptions(top_k=3, score_threshold=0.2))

    assert record == {
        "uri": "u",
        "predictions": [{"label": "b", "score": pytest.approx(0.6)}, {"label": "d", "score": pytest.approx(0.25)}],
    }
    assert shard_key(3, 12) == "predictions-00003-of-00012.jsonl"


# --- a real tritonserver -----------------------------------------------------------


def test_log_summary_puts_the_cause_before_the_tables() -> None:
    log = "\n".join(
        [
            'E1123 15:23:56.124264 5126 server.cc:241] "CudaDriverHelper has not been initialized."',
            "E1123 15:23:57.809592 5126 model_lifecycle.cc:642] \"failed to load 'm': ValueError: boom\"",
            *(["+------+", "| Model | Status |", ""] * 20),
            "error: creating server: Internal - failed to load all models",
        ]
    )

    assert summarize_log(log).splitlines() == [
        "E1123 15:23:57.809592 5126 model_lifecycle.cc:642] \"failed to load 'm': ValueError: boom\"",
        "error: creating server: Internal - failed to load all models",
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, onnx_path: Path) -> Iterator[LocalTritonServer]:
    repo = tmp_path_factory.mktemp("triton") / "repository"
    write_local_repository(repo, onnx_path, LABELS, PREPROCESS, max_batch_size=8)
    with LocalTritonServer(repo, work_dir=repo.parent / "work") as running:
        yield running


def url_for(server: LocalTritonServer, protocol: Protocol) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.mark.e2e
@needs_tritonserver
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("fmt", "seed"), [("PNG", 10), ("JPEG", 11)])
def test_served_predictions_equal_onnxruntime_on_shared_preprocessing(
    server: LocalTritonServer, onnx_path: Path, protocol: Protocol, fmt: str, seed: int
) -> None:
    image = encode_image(fmt, seed)

    predictions = predict(image, url_for(server, protocol), protocol=protocol, top_k=TOP_K)

    expected = reference_top_k(onnx_path, image)
    assert [p.label for p in predictions] == [label for label, _ in expected]
    assert [p.index for p in predictions] == [LABELS.index(label) for label, _ in expected]
    np.testing.assert_allclose([p.score for p in predictions], [s for _, s in expected], atol=1e-5)


@pytest.mark.e2e
@needs_tritonserver
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_non_image_is_a_readable_error_and_server_stays_healthy(
    server: LocalTritonServer, onnx_path: Path, protocol: Protocol
) -> None:
    url = url_for(server, protocol)

    with pytest.raises(PredictionError) as failure:
        predict(b"not an image", url, protocol=protocol)

    message = str(failure.value)
    assert "IMAGE[0] is not a decodable image (12 bytes): not in an image format Pillow can read" in message
    assert "BytesIO" not in message

    image = encode_image("PNG", 12)
    assert predict(image, url, protocol=protocol)[0].label == reference_top_k(onnx_path, image)[0][0]


@pytest.mark.e2e
@needs_tritonserver
def test_concurrent_good_and_bad_requests_get_their_own_answers(server: LocalTritonServer, onnx_path: Path) -> None:
    payloads = [encode_image("PNG", seed) if seed % 3 else b"\x89PNG broken" for seed in range(12)]

    def attempt(payload: bytes) -> str:
        try:
            return predict(payload, server.http_url, top_k=1)[0].label
        except PredictionError:
            return "error"

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(attempt, payloads))

    expected = [
        reference_top_k(onnx_path, payload)[0][0] if seed % 3 else "error" for seed, payload in enumerate(payloads)
    ]
    assert answers == expected


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unreachable_server_is_a_prediction_error(protocol: Protocol) -> None:
    with pytest.raises(PredictionError, match=r"127\.0\.0\.1"):
        predict(encode_image("PNG", 0), f"127.0.0.1:{free_ports(1)[0]}", protocol=protocol, timeout_s=5)


@pytest.mark.e2e
@needs_tritonserver
def test_model_that_fails_to_load_stops_the_server_with_its_log(tmp_path: Path, onnx_path: Path) -> None:
    # The ONNX model has 5 classes; 2 labels make the backend refuse to initialize.
    repo = tmp_path / "repository"
    write_local_repository(repo, onnx_path, ["a", "b"], PREPROCESS)
    server = LocalTritonServer(repo, work_dir=tmp_path / "work", startup_timeout_s=60)

    with pytest.raises(TritonServerError, match=r"outputs 5 classes but labels\.txt lists 2") as failure:
        server.start()

    assert "failed to load all models" in str(failure.value)
    assert "CudaDriverHelper" not in str(failure.value)
    assert "+-----" not in str(failure.value)
    with pytest.raises(TritonServerError, match="not started"):
        server.wait()
