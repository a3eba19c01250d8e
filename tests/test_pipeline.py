"""Train -> evaluate -> export on the bundled digits, every file checked.

The numbers in evaluation.json are recomputed here, independently, with
scikit-learn from the saved test predictions; the saved predictions are in turn
checked against the exported model run on the test images. The local Triton
layout is served by the real tritonserver and compared with eager PyTorch.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import PIL.Image
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
)
from typer.testing import CliRunner

from autovision.cli import app as cli
from autovision.client import predict_automl
from autovision.contract import env
from autovision.contract.files import EMBEDDING_OUTPUT, ModelCard
from autovision.contract.keys import RunLocation, base_weights_key
from autovision.data.importer import import_dataset
from autovision.data.manifest import ImageRecord
from autovision.evaluate import SplitPredictions, softmax
from autovision.export import onnx_logits
from autovision.export.measure import LATENCY_RUNS
from autovision.export.onnx_export import onnx_outputs
from autovision.monitor.reference import DriftReference
from autovision.pipeline import run_uid, train_evaluate_export, train_run_uid
from autovision.preprocess import PreprocessConfig, preprocess_batch
from autovision.progress import LogReporter
from autovision.resources import EdgeFormat
from autovision.search.base_model import find_base_model
from autovision.search.job import SearchSettings
from autovision.serving import LocalTritonServer, predict
from autovision.serving.tritonserver import TritonServerError, pytriton_tritonserver_dir
from autovision.storage import Storage, read_uris
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.models import build_model
from autovision.train.trainer import TrainConfig
from tests.support.served import Served, serve_endpoints

# Small enough for two CPU cores in ~20 s, good enough to be a real classifier (~97%).
CONFIG = TrainConfig(epochs=3, architecture=ResidualCNNConfig(width=8))
PREPROCESS = PreprocessConfig(size=16)
LOCATION = RunLocation("ns", "digits-job", "u1")
runner = CliRunner()


@dataclass(frozen=True)
class FinishedRun:
    storage: Storage
    card: ModelCard
    test_records: list[ImageRecord]

    def key(self, name: str) -> str:
        return f"{LOCATION.prefix}/{name}"

    def read_json(self, name: str) -> Any:
        return self.storage.read_json(self.key(name))

    @property
    def uri(self) -> str:
        return self.storage.uri(LOCATION.prefix)

    def local_path(self, name: str) -> Path:
        return Path(self.storage.path(self.key(name)))

    def predictions(self) -> SplitPredictions:
        return SplitPredictions.from_npz(self.storage.read_bytes(self.key("model/test_predictions.npz")))

    def test_images(self) -> list[bytes]:
        return read_uris([record.uri for record in self.test_records], self.storage.settings)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, digits_zip: Path) -> FinishedRun:
    storage = Storage(f"file://{tmp_path_factory.mktemp('pipeline') / 'storage'}")
    dataset = import_dataset(str(digits_zip), "digits", storage)
    card = train_evaluate_export(
        storage,
        "digits",
        dataset.version,
        LOCATION,
        LogReporter(),
        config=CONFIG,
        preprocess=PREPROCESS,
        budget_milli_node_hours=1000,
        edge_formats=[EdgeFormat.TFLITE, EdgeFormat.TFLITE_INT8],
    )
    test_records = [record for record in dataset.records if record.split == "test"]
    return FinishedRun(storage=storage, card=card, test_records=test_records)


MODEL_FILES = [
    "model/confusion_matrix.csv",
    "model/drift_reference.npz",
    "model/evaluation.json",
    "model/model.int8.onnx",
    "model/model.int8.tflite",
    "model/model.json",
    "model/model.onnx",
    "model/model.pt",
    "model/model.tflite",
    "model/report.html",
    "model/test_predictions.npz",
]
LOCAL_LAYOUT = [
    "triton/autovision/1/backend_common.py",
    "triton/autovision/1/model.onnx",
    "triton/autovision/1/model.py",
    "triton/autovision/1/preprocess.json",
    "triton/autovision/1/preprocess.py",
    "triton/autovision/config.pbtxt",
    "triton/autovision/labels.txt",
]


@pytest.mark.training
def test_every_file_is_written_and_the_card_last(run: FinishedRun) -> None:
    keys = [key.removeprefix(LOCATION.prefix + "/") for key in run.storage.list_keys(LOCATION.prefix)]

    assert [key for key in keys if key.startswith("model/")] == MODEL_FILES
    assert [key for key in keys if key.startswith("triton/")] == LOCAL_LAYOUT
    cluster = [key for key in keys if key.startswith("triton-cluster/")]
    assert "triton-cluster/autovision/config.pbtxt" in cluster
    assert "triton-cluster/autovision_onnx/1/model.onnx" in cluster
    assert len(cluster) == 15
    assert run.read_json("progress.json")["phase"] == "Succeeded"
    card_written = run.local_path("model/model.json").stat().st_mtime_ns
    for key in keys:
        if key not in ("model/model.json", "progress.json"):
            assert run.local_path(key).stat().st_mtime_ns <= card_written, f"{key} written after model.json"


@pytest.mark.training
def test_model_card(run: FinishedRun) -> None:
    card = ModelCard.model_validate(run.read_json("model/model.json"))
    evaluation = run.read_json("model/evaluation.json")

    assert card == run.card
    assert card.labels == [f"digit_{i}" for i in range(10)]
    assert card.architecture == {
        "family": "residual_cnn",
        "width": 8,
        "stages": 3,
        "blocks_per_stage": 1,
        "kernel": 3,
        "stem_stride": 1,
        "head": "linear",
        "dropout": 0.1,
    }
    assert card.task == "SingleLabel"
    assert card.search["chosenTrial"] == card.final_fit.trial == 0, "a given configuration is one trial"
    assert [trial["state"] for trial in card.search["trials"]] == ["Complete"]
    assert card.final_fit.retrained is False
    assert card.metrics.validation_accuracy == card.search["trials"][0]["value"]
    assert (card.input_size, card.mean, card.std) == (16, PREPROCESS.mean, PREPROCESS.std)
    assert card.dataset.name == "digits"
    assert card.dataset.version.startswith("sha256-")
    assert card.metrics.test_accuracy == evaluation["accuracy"] > 0.9
    assert card.metrics.int8_test_accuracy == evaluation["int8"]["accuracy"]
    assert card.milli_node_hours_used >= 1
    assert card.budget_milli_node_hours == 1000
    for name, file in [("onnx", "model.onnx"), ("torchscript", "model.pt"), ("int8Onnx", "model.int8.onnx")]:
        assert card.artifacts[name] == run.storage.uri(run.key(f"model/{file}"))
        assert card.exports[name]["file"] == file
    assert card.artifacts["tritonRepository"] == run.storage.uri(run.key("triton"))
    assert card.artifacts["tritonClusterRepository"] == run.storage.uri(run.key("triton-cluster"))
    assert run.read_json("progress.json")["artifacts"] == card.artifacts


@pytest.mark.training
def test_exports_passed_parity_and_batch_dynamically(run: FinishedRun) -> None:
    images = preprocess_batch(run.test_images(), PREPROCESS)
    for name in ("onnx", "torchscript"):
        parity = run.card.parity[name]
        assert parity["images"] == len(run.test_records)
        assert parity["maxAbsDiff"] <= parity["tolerance"] == 1e-4
        assert parity["top1Identical"] is True
    onnx_model = run.storage.read_bytes(run.key("model/model.onnx"))
    assert onnx.load_from_string(onnx_model).graph.input[0].type.tensor_type.shape.dim[0].dim_param
    full = onnx_logits(onnx_model, images)
    for size in (1, 5):
        np.testing.assert_allclose(onnx_logits(onnx_model, images[:size]), full[:size], atol=1e-5)
    torchscript = torch.jit.load(io.BytesIO(run.storage.read_bytes(run.key("model/model.pt"))))  # type: ignore[no-untyped-call]
    with torch.inference_mode():
        logits, _ = torchscript(torch.from_numpy(images[:5]))
    np.testing.assert_allclose(logits.numpy(), full[:5], atol=1e-4)


@pytest.mark.training
def test_drift_reference_is_the_served_models_answers_on_the_test_split(run: FinishedRun) -> None:
    reference = DriftReference.from_npz(run.storage.read_bytes(run.key("model/drift_reference.npz")))
    onnx_model = run.storage.read_bytes(run.key("model/model.onnx"))
    served = onnx_outputs(onnx_model, preprocess_batch(run.test_images(), PREPROCESS))
    scores = run.predictions().scores

    assert reference.labels == run.card.labels
    np.testing.assert_allclose(reference.embeddings, served[EMBEDDING_OUTPUT], atol=1e-5)
    np.testing.assert_array_equal(reference.predicted, scores.argmax(axis=1))
    np.testing.assert_allclose(reference.confidences, scores.max(axis=1), atol=1e-6)


@pytest.mark.training
def test_the_edge_format_asked_for_is_written_with_the_runs_labels_and_agrees(run: FinishedRun) -> None:
    from autovision.export.tflite import tflite_logits
    from autovision.export.tflite_metadata import read_metadata

    path = run.local_path("model/model.tflite")
    assert read_metadata(path).labels == tuple(run.card.labels)
    images = preprocess_batch(run.test_images(), PREPROCESS)
    onnx_top1 = onnx_logits(run.storage.read_bytes(run.key("model/model.onnx")), images).argmax(axis=1)
    assert (tflite_logits(path, images).argmax(axis=1) == onnx_top1).mean() >= 0.995


@pytest.mark.training
def test_evaluation_and_report_show_each_formats_size_latency_and_top1(run: FinishedRun) -> None:
    evaluation = run.read_json("model/evaluation.json")
    formats = {entry["format"]: entry for entry in evaluation["formats"]}
    assert list(formats) == ["onnx", "int8 onnx", "tflite", "tflite-int8"]
    for entry in formats.values():
        assert entry["bytes"] == len(run.storage.read_bytes(run.key(f"model/{entry['file']}")))
        latency = entry["latencyMs"]
        assert latency["runs"] == LATENCY_RUNS
        assert 0 < latency["median"] <= latency["p90"] < 1000
    assert formats["onnx"]["top1Agreement"] == 1.0  # the fp32 ONNX passed parity with PyTorch
    assert formats["onnx"]["top1"] == pytest.approx(evaluation["accuracy"])
    assert formats["int8 onnx"]["top1"] == pytest.approx(evaluation["int8"]["accuracy"])
    assert formats["tflite"]["top1Agreement"] >= 0.995
    assert abs(formats["tflite"]["top1"] - evaluation["accuracy"]) <= 0.005
    report = run.storage.read_bytes(run.key("model/report.html")).decode()
    table = report[report.index('<div id="formats">') :]
    assert all(f"<td>{name}</td><td>{entry['file']}</td>" in table for name, entry in formats.items())


@pytest.mark.training
def test_saved_predictions_are_the_exported_models_scores(run: FinishedRun) -> None:
    predictions = run.predictions()
    labels = run.card.labels

    assert predictions.uris == [record.uri for record in run.test_records]
    assert predictions.labels == labels
    truth = [labels[row.argmax()] for row in predictions.truth]
    assert truth == [record.labels[0] for record in run.test_records]
    onnx_model = run.storage.read_bytes(run.key("model/model.onnx"))
    scores = softmax(onnx_logits(onnx_model, preprocess_batch(run.test_images(), PREPROCESS)))
    np.testing.assert_allclose(predictions.scores, scores, atol=1e-5)


def sklearn_threshold_metrics(predictions: SplitPredictions, threshold: float) -> dict[str, Any]:
    """The threshold metrics, recomputed with scikit-learn on indicator matrices."""
    truth, scores = predictions.truth.astype(int), predictions.scores
    predicted = (scores >= threshold).astype(int)
    top1 = np.zeros_like(predicted)
    rows = np.arange(len(scores))
    top1[rows, scores.argmax(axis=1)] = scores[rows, scores.argmax(axis=1)] >= threshold

    def averaged(pred: npt.NDArray[Any], average: str) -> dict[str, float]:
        precision, recall, f1, _ = precision_recall_fscore_support(truth, pred, average=average, zero_division=0)
        return {"precision": precision, "recall": recall, "f1": f1}

    per_label = precision_recall_fscore_support(truth, predicted, zero_division=0)
    at1 = averaged(top1, "micro")
    return {
        "micro": averaged(predicted, "micro"),
        "macro": averaged(predicted, "macro"),
        "precisionAt1": at1["precision"],
        "recallAt1": at1["recall"],
        "perLabel": {
            label: {"precision": p, "recall": r, "f1": f, "support": s}
            for label, p, r, f, s in zip(predictions.labels, *per_label, strict=True)
        },
    }


def assert_threshold_metrics_match(at: dict[str, Any], expected: dict[str, Any]) -> None:
    assert at["micro"] == pytest.approx(expected["micro"])
    assert at["macro"] == pytest.approx(expected["macro"])
    assert at["precisionAt1"] == pytest.approx(expected["precisionAt1"])
    assert at["recallAt1"] == pytest.approx(expected["recallAt1"])
    for label, values in expected["perLabel"].items():
        assert {key: at["perLabel"][label][key] for key in values} == pytest.approx(values), label


@pytest.mark.training
def test_evaluation_json_recomputed_with_sklearn(run: FinishedRun) -> None:
    evaluation = run.read_json("model/evaluation.json")
    predictions = run.predictions()
    truth, scores = predictions.truth, predictions.scores
    targets, top1 = truth.argmax(axis=1), scores.argmax(axis=1)

    assert evaluation["images"] == len(run.test_records)
    assert evaluation["scoreThreshold"] == 0.5
    assert evaluation["accuracy"] == pytest.approx(accuracy_score(targets, top1))
    assert evaluation["logLoss"] == pytest.approx(log_loss(targets, scores, labels=list(range(10))), rel=1e-5)
    assert_threshold_metrics_match(evaluation["atThreshold"], sklearn_threshold_metrics(predictions, 0.5))
    for point in evaluation["thresholdSweep"]:
        expected = sklearn_threshold_metrics(predictions, point["threshold"])
        assert {key: point[key] for key in ("precision", "recall", "f1")} == pytest.approx(expected["micro"])
        assert (point["precisionAt1"], point["recallAt1"]) == pytest.approx(
            (expected["precisionAt1"], expected["recallAt1"])
        )
    assert [point["threshold"] for point in evaluation["thresholdSweep"]] == pytest.approx(np.linspace(0, 1, 21))
    per_label_ap = {
        label: average_precision_score(truth[:, j], scores[:, j]) for j, label in enumerate(predictions.labels)
    }
    assert evaluation["averagePrecision"]["perLabel"] == pytest.approx(per_label_ap)
    assert evaluation["averagePrecision"]["micro"] == pytest.approx(
        average_precision_score(truth, scores, average="micro")
    )
    assert evaluation["averagePrecision"]["macro"] == pytest.approx(
        average_precision_score(truth, scores, average="macro")
    )
    assert evaluation["rocAuc"] is None, "ten labels, single-label: no ROC-AUC"
    assert evaluation["confusionMatrix"]["matrix"] == confusion_matrix(targets, top1, labels=list(range(10))).tolist()
    wrong = np.flatnonzero(top1 != targets)
    ranked = wrong[np.argsort(-scores[wrong, top1[wrong]], kind="stable")][:10]
    assert [m["uri"] for m in evaluation["mostConfidentMistakes"]] == [predictions.uris[i] for i in ranked]
    assert [m["score"] for m in evaluation["mostConfidentMistakes"]] == pytest.approx(scores[ranked, top1[ranked]])


@pytest.mark.training
def test_int8_accuracy_recomputed(run: FinishedRun) -> None:
    int8 = run.storage.read_bytes(run.key("model/model.int8.onnx"))
    logits = onnx_logits(int8, preprocess_batch(run.test_images(), PREPROCESS))
    targets = run.predictions().truth.argmax(axis=1)

    evaluation = run.read_json("model/evaluation.json")
    assert evaluation["int8"]["accuracy"] == pytest.approx(accuracy_score(targets, logits.argmax(axis=1)))
    assert evaluation["int8"]["accuracy"] > 0.85
    assert evaluation["int8"]["top1Agreement"] == pytest.approx(
        float((logits.argmax(axis=1) == run.predictions().top1).mean())
    )


@pytest.mark.training
def test_confusion_csv_and_report(run: FinishedRun) -> None:
    evaluation = run.read_json("model/evaluation.json")
    rows = list(csv.reader(io.StringIO(run.storage.read_bytes(run.key("model/confusion_matrix.csv")).decode())))
    report = run.storage.read_bytes(run.key("model/report.html")).decode()

    assert rows[0] == ["true\\predicted", *run.card.labels]
    assert [[int(cell) for cell in row[1:]] for row in rows[1:]] == evaluation["confusionMatrix"]["matrix"]
    assert 'id="confusion-matrix"' in report
    assert 'id="pr-micro"' in report
    assert "<script" not in report
    explained = evaluation["explanations"]
    assert explained["method"] == "grad_cam"
    mistakes = [mistake["uri"] for mistake in evaluation["mostConfidentMistakes"]]
    assert [image["uri"] for image in explained["images"] if image["kind"] == "mistake"] == mistakes
    assert {image["label"] for image in explained["images"] if image["kind"] == "correct"} <= set(run.card.labels)
    assert report.count('class="heatmap"') == len(explained["images"])
    assert report.count('src="data:image/png;base64,') == len(mistakes) + len(explained["images"])


@pytest.mark.training
def test_evaluate_cli_recomputes_at_another_threshold(run: FinishedRun, tmp_path: Path) -> None:
    written = tmp_path / "evaluation-0.7.json"

    result = runner.invoke(cli, ["evaluate", run.uri, "--threshold", "0.7", "--json", "--output", str(written)])

    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert evaluation == json.loads(written.read_text())
    assert evaluation["scoreThreshold"] == 0.7
    assert_threshold_metrics_match(evaluation["atThreshold"], sklearn_threshold_metrics(run.predictions(), 0.7))
    assert evaluation["int8"] == run.read_json("model/evaluation.json")["int8"]

    table = runner.invoke(cli, ["evaluate", run.uri + "/model", "--threshold", "0.7"], env={"COLUMNS": "150"})
    assert table.exit_code == 0, table.output
    assert "precision @ 0.70 (micro)" in table.output
    assert "digit_9" in table.output


def test_evaluate_cli_refuses_a_location_without_a_model(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["evaluate", str(tmp_path)])

    assert result.exit_code == 1
    assert "holds no finished model" in result.output


# --- predict-batch --------------------------------------------------------------------


def write_csv(path: Path, uris: list[str]) -> Path:
    path.write_text("uri\n" + "".join(f"{uri}\n" for uri in uris), encoding="utf-8")
    return path


def read_records(output: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for file in sorted(output.glob("predictions-*.jsonl"))
        for line in file.read_text().splitlines()
    ]


@pytest.mark.training
def test_predict_batch_writes_what_the_model_predicts(run: FinishedRun, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    uris = [record.uri for record in run.test_records[:20]]
    source = write_csv(tmp_path / "images.csv", [*uris, "broken.png"])
    output = tmp_path / "out"
    args = ["predict-batch", str(source), "--model", run.uri, "--output", str(output), "--shard-size", "8"]

    result = runner.invoke(cli, [*args, "--json"])

    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert (manifest["images"], manifest["errors"], len(manifest["shards"])) == (21, 1, 3)
    records = read_records(output)
    assert [record["uri"] for record in records] == [*uris, str(broken)]
    assert "not a decodable image" in records[-1]["error"]
    predictions = run.predictions()
    for record, scores in zip(records[:20], predictions.scores[:20], strict=True):
        assert len(record["predictions"]) == 3
        best = record["predictions"][0]
        assert best["label"] == predictions.labels[int(scores.argmax())]
        assert best["score"] == pytest.approx(float(scores.max()), abs=1e-5)

    again = runner.invoke(cli, [*args, "--json"])
    assert json.loads(again.stdout) == manifest, "a finished batch prediction is returned as is"
    other = runner.invoke(cli, [*args, "--top-k", "1"])
    assert other.exit_code == 1
    assert "already holds the output of another batch prediction" in other.output


@pytest.mark.training
def test_predict_batch_retry_keeps_finished_shards(run: FinishedRun, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for index, data in enumerate(run.test_images()[:6]):
        (images / f"{index}.png").write_bytes(data)
    (images / "notes.txt").write_text("not an image")
    output = tmp_path / "out"
    args = ["predict-batch", str(images), "--model", run.uri, "--output", str(output), "--shard-size", "2", "--int8"]
    assert runner.invoke(cli, args).exit_code == 0
    kept = output / "predictions-00000-of-00003.jsonl"
    kept_mtime = kept.stat().st_mtime_ns
    # A Job killed before its last shard and manifest: the retry writes only those.
    (output / "manifest.json").unlink()
    (output / "predictions-00002-of-00003.jsonl").unlink()

    result = runner.invoke(cli, [*args, "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 6
    assert kept.stat().st_mtime_ns == kept_mtime
    assert len(read_records(output)) == 6
    assert json.loads((output / "request.json").read_text())["model"].endswith("model.int8.onnx")


# --- the local Triton layout, served by the real tritonserver -------------------------


def tritonserver_missing() -> bool:
    try:
        return not (pytriton_tritonserver_dir() / "bin" / "tritonserver").is_file()
    except TritonServerError:
        return True


def eager_scores(run: FinishedRun, images: list[bytes]) -> npt.NDArray[Any]:
    """Scores of the trained weights in plain eager PyTorch, on the shared preprocessing."""
    state = torch.load(run.local_path("trials/0/checkpoint.pt"), weights_only=False)
    model = build_model(CONFIG.architecture, len(run.card.labels))
    model.load_state_dict(state["best_model"])
    model.eval()
    with torch.inference_mode():
        logits = model(torch.from_numpy(preprocess_batch(images, PREPROCESS))).numpy()
    return softmax(logits)


@pytest.mark.e2e
@pytest.mark.skipif(tritonserver_missing(), reason="tritonserver from nvidia-pytriton is not available")
@pytest.mark.training
@pytest.mark.tritonserver
def test_local_layout_served_by_tritonserver_equals_eager_pytorch(run: FinishedRun, tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    run.storage.download_prefix(run.key("triton"), repository)
    images = run.test_images()[:8]
    expected = eager_scores(run, images)
    labels = run.card.labels

    with LocalTritonServer(repository, work_dir=tmp_path / "work") as server:
        served = [predict(image, server.http_url, top_k=len(labels)) for image in images]
        over_grpc = predict(images[0], server.grpc_url, protocol="grpc", top_k=len(labels))

    for predictions, scores in zip(served, expected, strict=True):
        by_index = np.zeros(len(labels), dtype=np.float32)
        for prediction in predictions:
            assert prediction.label == labels[prediction.index]
            by_index[prediction.index] = prediction.score
        assert predictions[0].index == int(scores.argmax())
        np.testing.assert_allclose(by_index, scores, atol=1e-5)
    assert [p.label for p in over_grpc] == [p.label for p in served[0]]


@pytest.mark.training
def test_a_run_from_a_finished_run_continues_from_its_weights_and_records_it(run: FinishedRun) -> None:
    base = find_base_model(run.uri)
    retrained = RunLocation("ns", "digits-retrain", "u2")

    card = train_evaluate_export(
        run.storage,
        "digits",
        run.card.dataset.version,
        retrained,
        LogReporter(),
        budget_milli_node_hours=1000,
        search=SearchSettings(max_trials=1),
        base_model=base,
    )

    assert card.base_model == base.record()
    assert card.base_model.run == run.uri
    assert (card.architecture, card.input_size, card.mean, card.std) == (
        run.card.architecture, run.card.input_size, run.card.mean, run.card.std
    )  # fmt: skip
    assert card.training["initial_weights"] == run.storage.uri(base_weights_key(retrained.prefix))
    assert run.storage.exists(f"{retrained.prefix}/{card.final_fit.checkpoint}")
    assert card.metrics.test_accuracy >= run.card.metrics.test_accuracy - 0.03


def served_copy(image: bytes) -> bytes:
    """The image a shade brighter, as a new PNG."""
    pixels = np.asarray(PIL.Image.open(io.BytesIO(image)).convert("RGB"), dtype=np.int16)
    out = io.BytesIO()
    PIL.Image.fromarray(np.clip(pixels + 3, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.e2e
@pytest.mark.skipif(tritonserver_missing(), reason="tritonserver from nvidia-pytriton is not available")
@pytest.mark.training
@pytest.mark.tritonserver
def test_the_retraining_loop_on_the_quickstart_data(
    run: FinishedRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/monitoring.md end to end on the quickstart's digits: serve logging every prediction, check drift,
    export the least confident as a review CSV, label it, import it as the next version, retrain from the
    served model."""
    monkeypatch.setenv(env.STORAGE_ROOT, run.storage.uri(""))
    # Traffic the dataset has not seen: its test images, a shade brighter (new bytes, the same digits).
    traffic = [served_copy(image) for image in run.test_images()]
    truth = {hashlib.sha256(image).hexdigest(): r.labels[0] for image, r in zip(traffic, run.test_records, strict=True)}
    with Served(LOCATION.prefix, "--log-rate", "1", "--log-images") as served:
        served.wait_until_ready()
        gateway = serve_endpoints(served).gateway
        answers = [predict_automl(image, gateway) for image in traffic]
        assert served.stop(signal.SIGINT) == 0  # the gateway writes what its log still holds
    assert sum(1 for answer in answers if answer) > len(answers) // 2, "most answers pass the score threshold"

    drift = runner.invoke(cli, ["monitor", run.uri, "--deployment", "autovision"])
    assert drift.exit_code == 0, drift.output
    assert "NoDrift" in drift.output, "the test split, served, is the reference itself"

    review = tmp_path / "review.csv"
    exported = runner.invoke(cli, ["review-set", "autovision", "--count", "40", "--output", str(review)])
    assert exported.exit_code == 0, exported.output
    rows = [line.split(",") for line in review.read_text().splitlines()]
    assert len(rows) == 40
    assert all(row[0] == "UNASSIGNED" for row in rows)
    labelled = tmp_path / "labelled.csv"  # the person labelling: the true label of each image
    labelled.write_text("".join(f"{row[0]},{row[1]},{truth[row[1].rsplit('/', 1)[1]]}\n" for row in rows))

    imported = runner.invoke(cli, ["dataset", "import", str(labelled), "--name", "digits", "--add-to-previous"])
    assert imported.exit_code == 0, imported.output
    latest = run.storage.read_json("datasets/digits/latest.json")["version"]
    assert latest != run.card.dataset.version

    retrained = RunLocation("ns", "digits-loop", "u3")
    card = train_evaluate_export(
        run.storage,
        "digits",
        latest,
        retrained,
        LogReporter(),
        budget_milli_node_hours=1000,
        search=SearchSettings(max_trials=1),
        base_model=find_base_model(run.uri),
    )
    assert card.base_model is not None
    assert card.base_model.run == run.uri
    assert card.dataset.version == latest
    assert card.metrics.test_accuracy >= run.card.metrics.test_accuracy - 0.03


def test_a_train_run_id_without_backbones_or_a_base_is_as_before_either_existed() -> None:
    """Runs started before backbones and bases keep their ids (a rerun resumes them); each choice makes its own."""
    plain = train_run_uid("sha256-v", 10, "Balanced", early_stopping=True, seed=0)
    assert plain == run_uid("sha256-v", 10, "Balanced", True, 0)
    assert train_run_uid("sha256-v", 10, "Balanced", early_stopping=True, seed=0, base_uri="file:///r") != plain
    assert (
        train_run_uid("sha256-v", 10, "Balanced", early_stopping=True, seed=0, backbones=["a=resnet18@s3://b/w"])
        != plain
    )
