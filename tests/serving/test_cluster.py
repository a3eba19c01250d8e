"""The cluster layout: an ensemble for NVIDIA's official Triton image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tritonclient.grpc import model_config_pb2

import autovision.preprocess
from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.serving import (
    RepositoryError,
    build_config_pbtxt,
    write_local_repository,
)
from autovision.serving.cluster import write_cluster_repository
from autovision.serving.model_config import InstanceKind
from tests.support.serving import (
    LABELS,
    PREPROCESS,
    FakeTensor,
    encode_image,
    fake_request,
    load_backend,
    make_onnx_classifier,
    parse_config,
)

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
    local = parse_config(build_config_pbtxt("autovision", len(LABELS), 8, multi_label=False, embedding_size=3))

    assert ensemble.platform == "ensemble"
    assert ensemble.max_batch_size == local.max_batch_size
    assert list(ensemble.input) == list(local.input)
    assert list(ensemble.output) == list(local.output), "IMAGE bytes in, SCORES with label_filename and embedding out"
    assert [output.name for output in ensemble.output] == ["SCORES", EMBEDDING_OUTPUT]
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
    for output in ensemble.output:
        assert tensors[output.name] == (output.data_type, list(output.dims)), output.name
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
    outputs = [session.run(["logits", EMBEDDING_OUTPUT], {"input": pixels[i].output_tensors[0].array}) for i in good]
    scores = postprocess_model.execute([{"LOGITS": FakeTensor("LOGITS", logits)} for logits, _ in outputs])

    assert pixels[1].error.code == "INVALID_ARG"
    assert pixels[1].error.message == expected[1].error.message
    assert [pixels[i].output_tensors[0].tensor_name for i in good] == ["PIXELS", "PIXELS"]
    for response, index in zip(scores, good, strict=True):
        assert response.output_tensors[0].tensor_name == "SCORES"
        np.testing.assert_allclose(response.output_tensors[0].array, expected[index].output_tensors[0].array, atol=1e-6)
    for (_, embedding), index in zip(outputs, good, strict=True):
        assert expected[index].output_tensors[1].tensor_name == EMBEDDING_OUTPUT
        np.testing.assert_allclose(embedding, expected[index].output_tensors[1].array, atol=1e-6)


def test_a_model_without_an_embedding_keeps_scores_only(tmp_path: Path) -> None:
    """A run exported before embeddings: both layouts serve SCORES alone, as before."""
    plain = make_onnx_classifier(tmp_path / "plain.onnx", len(LABELS), embedding=False)
    local = write_local_repository(tmp_path / "local", plain, LABELS, PREPROCESS)
    cluster = write_cluster_repository(tmp_path / "cluster", plain, LABELS, PREPROCESS)

    for model_dir in (local, cluster["autovision"]):
        assert [output.name for output in cluster_config(model_dir).output] == ["SCORES"]
    assert [output.name for output in cluster_config(cluster["autovision_onnx"]).output] == ["logits"]


def test_an_onnx_model_whose_second_output_is_not_the_embedding_is_refused(tmp_path: Path, onnx_path: Path) -> None:
    model = onnx.load(onnx_path)
    model.graph.output[1].name = "features"
    model.graph.node[-1].output[0] = "features"
    onnx.save(model, tmp_path / "odd.onnx")

    with pytest.raises(RepositoryError, match="second output must be 'embedding'"):
        write_cluster_repository(tmp_path / "cluster", tmp_path / "odd.onnx", LABELS, PREPROCESS)
    assert not (tmp_path / "cluster").exists()
