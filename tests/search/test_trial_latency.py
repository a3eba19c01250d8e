"""A trial's latency where its model runs: PyTorch for Cloud; for Edge its .tflite in LiteRT, charged to the trial."""

from __future__ import annotations

import importlib.util
import statistics
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial

from autovision.data.importer import import_dataset
from autovision.export.edge import EdgeUnavailableError
from autovision.preprocess import PreprocessConfig
from autovision.resources import OptimizeFor, TrainingTarget
from autovision.search.job import ImageCache, SearchSettings
from autovision.search.records import LatencyMethod, TrialRecord
from autovision.search.summary import summarise
from autovision.search.trial_latency import check_target, measure_latency
from autovision.storage import Storage
from autovision.train.trainer import TrialCheckpoint
from tests.support.export import small_model
from tests.support.search import digits_subset_zip, run_search_worker, search_job, tiny_space


def test_a_cloud_trial_is_timed_in_pytorch_with_no_file_size() -> None:
    latency = measure_latency(
        small_model(0), PreprocessConfig(size=16), "ab", TrainingTarget.CLOUD, torch.device("cpu")
    )
    assert latency.method is LatencyMethod.TORCH
    assert latency.milliseconds > 0
    assert latency.model_bytes is None


def test_an_edge_target_is_refused_without_the_edge_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec

    def without_litert(name: str, *args: Any) -> Any:
        return None if name in ("litert_torch", "ai_edge_litert") else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_litert)
    check_target(TrainingTarget.CLOUD)  # a Cloud target needs nothing more
    with pytest.raises(EdgeUnavailableError) as refused:
        check_target(TrainingTarget.EDGE)
    assert str(refused.value) == (
        "target Edge converts every trial to tflite and times it in LiteRT: cannot export tflite: "
        "litert_torch, ai_edge_litert not installed (pip install 'autovision[edge]')"
    )


@pytest.mark.training
def test_an_edge_search_times_each_trial_in_litert_records_its_size_and_charges_the_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("litert_torch", reason="the edge extra is not installed (docs/edge.md)")
    from autovision.export import tflite

    conversions: list[tuple[float, int]] = []  # (seconds, bytes) of each file converted
    timings: list[tuple[float, ...]] = []
    export_tflite, tflite_latency = tflite.export_tflite, tflite.tflite_latency

    def timed_export(*args: Any, **kwargs: Any) -> Path:
        started = time.perf_counter()
        path = export_tflite(*args, **kwargs)
        conversions.append((time.perf_counter() - started, path.stat().st_size))
        return path

    def recorded_latency(*args: Any) -> tuple[float, ...]:
        timings.append(tflite_latency(*args))
        return timings[-1]

    monkeypatch.setattr(tflite, "export_tflite", timed_export)
    monkeypatch.setattr(tflite, "tflite_latency", recorded_latency)
    storage = Storage(f"file://{tmp_path / 'storage'}")
    dataset = import_dataset(
        str(digits_subset_zip(tmp_path / "digits.zip", per_class=12, classes=3)), "digits", storage
    )
    settings = SearchSettings(early_stopping=False, max_trials=1, target=TrainingTarget.EDGE)
    job = search_job(storage, dataset.records, "runs/test/edge/u", space=tiny_space(), settings=settings)

    run_search_worker(job)

    store = job.study_store(storage)
    (trial,) = optuna.load_study(study_name="search", storage=store.optuna_storage()).get_trials()
    record = TrialRecord.of(trial)
    ((convert_seconds, file_bytes),) = conversions
    assert len(timings) == 1
    assert record.latency_method is LatencyMethod.LITERT
    assert record.latency_ms == statistics.median(timings[0])
    assert record.model_bytes == file_bytes > 0
    assert record.seconds - _trained_seconds(storage, trial) >= convert_seconds, "the conversion is the trial's cost"
    result = summarise(job, ImageCache(job.records, job.labels, storage))
    card = result.to_json(OptimizeFor.BALANCED)
    assert (card["target"], card["latencyMethod"]) == ("Edge", "litert-1-thread")
    assert card["trials"][0]["modelBytes"] == card["paretoFront"][0]["modelBytes"] == file_bytes


def _trained_seconds(storage: Storage, trial: FrozenTrial) -> float:
    state = TrialCheckpoint(storage, trial.user_attrs["checkpoint"]).load()
    assert state is not None
    return float(state["seconds_used"])
