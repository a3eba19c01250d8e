"""The whole local path, end to end, with real SeaweedFS S3 and the real tritonserver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autovision.data.shards import read_images
from autovision.data.versions import read_version
from autovision.embedded_s3 import EmbeddedS3
from autovision.evaluate import softmax
from autovision.export import onnx_logits
from autovision.preprocess import PreprocessConfig, preprocess_bytes
from autovision.progress import LogReporter
from autovision.quickstart import run_local_path
from autovision.storage import Storage
from autovision.train.trainer import TrainConfig

# Both run the whole local path: SeaweedFS, a trained and exported model, tritonserver.
pytestmark = [pytest.mark.e2e, pytest.mark.seaweedfs, pytest.mark.training, pytest.mark.tritonserver]


def test_local_path_on_s3_with_real_triton(embedded_s3: EmbeddedS3, digits_zip: Path, tmp_path: Path) -> None:
    storage = Storage.from_settings(embedded_s3.settings("e2e"))
    result = run_local_path(storage, str(digits_zip), tmp_path, LogReporter(), config=TrainConfig(epochs=3))

    assert result.card.metrics.test_accuracy > 0.85
    for key in ("model/model.json", "model/model.onnx", "model/evaluation.json", "triton/autovision/config.pbtxt"):
        assert storage.exists(f"{result.run.prefix}/{key}"), key
    assert storage.read_json(f"{result.run.prefix}/progress.json")["phase"] == "Succeeded"

    http, grpc = result.served.kserve["http"], result.served.kserve["grpc"]
    assert [p.label for p in http] == [p.label for p in grpc]
    np.testing.assert_allclose([p.score for p in http], [p.score for p in grpc], atol=1e-6)
    assert [(p.display_name, p.score) for p in result.served.automl] == [
        (p.label, p.score) for p in http if p.score >= 0.5
    ]

    # Triton's answer equals the exported model run directly on the shared preprocessing.
    onnx_path = tmp_path / "direct.onnx"
    onnx_path.write_bytes(storage.read_bytes(f"{result.run.prefix}/model/model.onnx"))
    image = read_images([result.image], storage.settings)[0]
    scores = softmax(onnx_logits(onnx_path, preprocess_bytes(image, PreprocessConfig())[None]))[0]
    labels = result.card.labels
    assert http[0].label == labels[int(scores.argmax())]
    assert http[0].score == pytest.approx(float(scores.max()), abs=1e-5)


def _checkpoint(workdir: Path) -> Path | None:
    found = sorted((workdir / "storage" / "runs").glob("local/quickstart/*/trials/0/checkpoint.pt"))
    return found[0] if found else None


def _quickstart(workdir: Path, epochs: int) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "autovision", "quickstart", "--workdir", str(workdir), "--epochs", str(epochs)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "120"}
    )


def test_ctrl_c_then_rerun_continues(tmp_path: Path) -> None:
    """Ctrl-C mid-training keeps finished work, marks nothing complete, and a rerun resumes."""
    import torch

    first = _quickstart(tmp_path, epochs=4)
    deadline = time.monotonic() + 240
    while _checkpoint(tmp_path) is None and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    checkpoint = _checkpoint(tmp_path)
    assert checkpoint is not None, first.communicate()[0]
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=60)
    assert first.returncode == 130, output
    run_dir = checkpoint.parents[2]
    assert not (run_dir / "model" / "model.json").exists()
    storage = Storage(f"file://{tmp_path / 'storage'}")
    for index in (tmp_path / "storage" / "datasets").glob("quickstart/*/index.parquet"):
        assert read_version(storage, "quickstart", index.parent.name), "the version reads whole"

    second = _quickstart(tmp_path, epochs=4)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output
    assert "test accuracy" in output
    assert "Triton grpc" in output
    assert "AutoML JSON gateway" in output
    state = torch.load(checkpoint, weights_only=False)
    assert state["starts"][0] == 0
    assert len(state["starts"]) == 2
    assert state["starts"][1] >= 1, "the rerun must continue from the checkpoint, not from scratch"
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3, 4]
