"""The search on real data at small budgets: budget, early stopping, kill and resume, parallel workers,
determinism, optimizeFor, the study journal on S3, and a multi-label run end to end."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from autovision.contract.keys import RunLocation
from autovision.data.importer import ImportResult, Task, import_dataset
from autovision.evaluate import SplitPredictions
from autovision.pipeline import train_evaluate_export
from autovision.preprocess import PreprocessConfig
from autovision.progress import LogReporter
from autovision.resources import OptimizeFor
from autovision.search import worker
from autovision.search.budget import BUDGET_UNIT_SECONDS, Claim, budget_seconds, milli_node_hours
from autovision.search.job import ImageCache, SearchJob, SearchSettings
from autovision.search.records import TrialRecord, spent_seconds
from autovision.search.study import StudyStore, open_study
from autovision.search.summary import summarise
from autovision.search.worker import run_workers
from autovision.storage import Storage, read_uris
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.images import ImageSet, load_images
from autovision.train.trainer import TrialCheckpoint
from tests.support.search import digits_subset_zip, run_search_worker, search_job, tiny_space


@dataclasses.dataclass(frozen=True)
class Digits:
    storage: Storage
    dataset: ImportResult

    def job(self, name: str, **kwargs: Any) -> SearchJob:
        return search_job(self.storage, self.dataset.records, f"runs/test/{name}/u", **kwargs)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    folder = tmp_path_factory.mktemp("search")
    storage = Storage(f"file://{folder / 'storage'}")
    dataset = import_dataset(str(digits_subset_zip(folder / "digits.zip", per_class=24)), "digits", storage)
    return Digits(storage, dataset)


def study_trials(job: SearchJob) -> list[FrozenTrial]:
    store = StudyStore(job.storage(), job.prefix, job.settings.work_dir)
    return optuna.load_study(study_name="search", storage=store.optuna_storage()).get_trials()


def finished(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [trial for trial in trials if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def checkpoint_starts(job: SearchJob, trial: FrozenTrial) -> list[int]:
    state = TrialCheckpoint(job.storage(), trial.user_attrs["checkpoint"]).load()
    assert state is not None
    return list(state["starts"])


@dataclasses.dataclass
class ClaimLog:
    """Every claim each trial published on the budget, in order, by trial number."""

    claims: dict[int, list[Claim]] = dataclasses.field(default_factory=dict)

    def late_seconds(self, trials: list[FrozenTrial]) -> float:
        """What the last trial spent beyond what it had claimed: decoding the images (a search's first trial
        claims none) and every stretch of steps slower than it claimed (a configuration's first steps, which
        measure its pace, and, on a loaded machine, any).

        With one worker only the trial running when the budget binds can take the search past it by that much:
        what earlier trials spent late was spent before the next asked. The budget's logic cannot hold it back;
        ``tests/search/test_budget.py`` checks that logic on a simulated clock, where nothing runs late. A trial
        that claimed nothing (no gate asked) has nothing late: all it spent counts against the budget.
        """
        last = max(trials, key=lambda trial: trial.number)
        claims = self.claims.get(last.number, [])
        if not claims:
            return 0.0
        spent_next = [claim.spent for claim in claims[1:]] + [float(last.user_attrs.get("seconds", 0.0))]
        stretches = sum(
            max(0.0, spent - claim.spent - claim.ahead) for claim, spent in zip(claims, spent_next, strict=True)
        )
        return float(last.user_attrs.get("decodeSeconds", 0.0)) + stretches


@pytest.fixture
def claim_log(monkeypatch: pytest.MonkeyPatch) -> ClaimLog:
    """Records what the trials of this process claim, as they publish it to the study."""
    log = ClaimLog()

    class RecordedLedger(worker._StudyLedger):
        def publish(self, claim: Claim) -> None:
            log.claims.setdefault(self.trial.number, []).append(claim)
            super().publish(claim)

    monkeypatch.setattr(worker, "_StudyLedger", RecordedLedger)
    return log


@pytest.mark.training
def test_budget_is_respected(digits: Digits, claim_log: ClaimLog) -> None:
    job = digits.job("budget", space=tiny_space(), budget=1)
    run_search_worker(job)

    result = summarise(job, ImageCache(job.records, job.labels, job.storage()))
    search_seconds = job.plan.search_seconds  # 80% of 3.6 s
    late = claim_log.late_seconds(study_trials(job))
    assert result.stop_reason == "budget"
    assert result.seconds <= search_seconds + BUDGET_UNIT_SECONDS + late, "the budget is a ceiling"
    progress = digits.storage.read_json(f"{job.prefix}/progress.json")
    assert progress["milliNodeHoursUsed"] == milli_node_hours(result.seconds)
    assert progress["milliNodeHoursUsed"] <= milli_node_hours(budget_seconds(1) + late)
    assert progress["trials"]["running"] == 0


@pytest.mark.training
def test_decoding_the_images_is_charged_to_the_trial_that_needed_them(
    digits: Digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Filling the image cache is device time: the first trial at a resolution pays for it, the next do not."""
    delay = 0.5

    def slow_to_decode(*args: Any, **kwargs: Any) -> ImageSet:
        time.sleep(delay)
        return load_images(*args, **kwargs)

    monkeypatch.setattr("autovision.search.job.load_images", slow_to_decode)
    job = digits.job("decoding", space=tiny_space(), settings=SearchSettings(early_stopping=False, max_trials=2))
    run_search_worker(job)

    first, second = sorted(study_trials(job), key=lambda trial: trial.number)
    assert first.user_attrs["resolution"] == second.user_attrs["resolution"]
    outside_training = [trial.user_attrs["seconds"] - trained_seconds(job, trial) for trial in (first, second)]
    assert outside_training[0] >= 2 * delay, "train and validation were decoded for the first trial"
    assert 0 <= outside_training[1] < delay, "the second trial found them in the cache"


def trained_seconds(job: SearchJob, trial: FrozenTrial) -> float:
    state = TrialCheckpoint(job.storage(), trial.user_attrs["checkpoint"]).load()
    assert state is not None
    return float(state["seconds_used"])


@pytest.mark.training
def test_early_stopping_ends_a_search_that_stopped_improving(digits: Digits) -> None:
    no_gain_counts = SearchSettings(early_stopping=True, patience=2, min_delta=1.0)
    job = digits.job("stalled", space=tiny_space(), settings=no_gain_counts)
    run_search_worker(job)
    result = summarise(job, ImageCache(job.records, job.labels, job.storage()))
    assert (result.stop_reason, len(result.trials)) == ("stalled", 3)

    without = digits.job(
        "not-stalled",
        space=tiny_space(),
        settings=dataclasses.replace(no_gain_counts, early_stopping=False, max_trials=5),
    )
    run_search_worker(without)
    assert len(study_trials(without)) == 5


def wait_for_a_trial_mid_way(job: SearchJob, process: subprocess.Popen[bytes], finished_count: int) -> None:
    """Until the subprocess has finished trials and has one that checkpointed an epoch but is not done."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            trials = study_trials(job)
        except KeyError:  # the study is not created yet
            trials = []
        running = [trial for trial in trials if trial.state == TrialState.RUNNING and trial.intermediate_values]
        if len(finished(trials)) >= finished_count and running:
            return
        time.sleep(0.05)
    raise AssertionError(f"the search never had a trial mid-way (exit code {process.poll()})")


@pytest.mark.training
def test_kill_9_mid_trial_then_rerun_loses_no_finished_trial(digits: Digits) -> None:
    settings = SearchSettings(early_stopping=False, max_trials=4)
    job = digits.job("killed", space=tiny_space(slow=True), settings=settings)
    root = digits.storage.uri("")
    command = [
        sys.executable,
        "-m",
        "tests.support.search",
        root,
        "digits",
        digits.dataset.version,
        job.prefix,
        "4",
        "--slow",
    ]
    process = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2], stderr=subprocess.DEVNULL)
    wait_for_a_trial_mid_way(job, process, finished_count=2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    before = study_trials(job)
    done_before = {trial.number: (trial.state, trial.value, trial.params) for trial in finished(before)}
    interrupted = [trial for trial in before if trial.state == TrialState.RUNNING]
    assert len(done_before) >= 2
    assert len(interrupted) == 1

    run_search_worker(job)

    after = study_trials(job)
    for trial in after:
        if trial.number in done_before:
            assert (trial.state, trial.value, trial.params) == done_before[trial.number], "a finished trial changed"
            assert checkpoint_starts(job, trial) == [0], "a finished trial was trained again"
    assert after[interrupted[0].number].state == TrialState.FAIL
    resumed = [trial for trial in after if trial.user_attrs.get("resumedFrom") == interrupted[0].number]
    assert len(resumed) == 1
    assert resumed[0].params == interrupted[0].params
    assert resumed[0].user_attrs["checkpoint"] == interrupted[0].user_attrs["checkpoint"]
    starts = checkpoint_starts(job, resumed[0])
    assert starts[0] == 0
    assert starts[1] >= 1, "the resumed trial continued from its checkpoint"
    assert len(finished(after)) == 4
    assert spent_seconds(after) >= spent_seconds(before)


class InterruptingReporter(LogReporter):
    """Raises KeyboardInterrupt (a Ctrl-C) inside a trial once the search has spent ``after`` seconds."""

    def __init__(self, after: float) -> None:
        self.after = after

    def update(self, completed: float, detail: str = "") -> None:
        if completed >= self.after and "epoch" in detail:
            raise KeyboardInterrupt


@pytest.mark.training
def test_a_rerun_spends_only_what_is_left_of_the_budget(digits: Digits, claim_log: ClaimLog) -> None:
    job = digits.job("interrupted", space=tiny_space(), budget=1)
    images = ImageCache(job.records, job.labels, job.storage())
    with pytest.raises(KeyboardInterrupt):
        run_workers(job, images, InterruptingReporter(after=0.0))  # at the first epoch's end
    spent_before = spent_seconds(study_trials(job))
    assert [trial.state for trial in study_trials(job)].count(TrialState.RUNNING) == 1

    run_workers(job, images, LogReporter())

    trials = study_trials(job)
    assert TrialState.RUNNING not in [trial.state for trial in trials]
    assert spent_before > 0
    # What ran late includes a resumed last trial's first steps: they measure its pace, which its interrupted
    # predecessor never reported.
    ceiling = job.plan.search_seconds + BUDGET_UNIT_SECONDS + claim_log.late_seconds(trials)
    assert spent_seconds(trials) <= ceiling, "the rerun got a fresh budget"


@pytest.mark.training
def test_two_worker_processes_share_one_study(digits: Digits) -> None:
    # Trials of about half a second, and enough of them that worker 0 alone would need several times
    # what spawning worker 1 takes (seconds: a new interpreter importing torch, more on a loaded machine).
    settings = SearchSettings(early_stopping=False, max_trials=40, workers=2)
    job = digits.job("parallel", space=tiny_space(slow=True), settings=settings)
    run_search_worker(job)

    trials = study_trials(job)
    assert {trial.user_attrs["worker"] for trial in trials} == {0, 1}
    assert [trial.number for trial in trials] == list(range(len(trials)))
    assert 40 <= len(finished(trials)) == len(trials) <= 41, "each worker may start one trial past the cap"
    assert len({trial.user_attrs["checkpoint"] for trial in trials}) == len(trials)


def search_history(trials: list[FrozenTrial]) -> list[tuple[Any, ...]]:
    return [(trial.number, trial.state, trial.params, trial.value, trial.intermediate_values) for trial in trials]


@pytest.mark.training
def test_a_search_is_deterministic_for_a_seed(digits: Digits) -> None:
    settings = SearchSettings(early_stopping=False, max_trials=6, seed=7)
    first, second = (digits.job(name, space=tiny_space(seed=7), settings=settings) for name in ("seed-a", "seed-b"))
    run_search_worker(first)
    run_search_worker(second)
    history = search_history(study_trials(first))
    assert history == search_history(study_trials(second))
    assert len({str(params) for _, _, params, _, _ in history}) > 1, "the trials differ from each other"


def add_trial(study: optuna.Study, job: SearchJob, params: dict[str, Any], value: float, latency: float) -> None:
    """A finished trial with the given parameters, validation value and latency."""
    study.enqueue_trial(params)
    trial = study.ask()
    job.space.suggest(trial)
    for name, attribute in {"bestValue": value, "latencyMs": latency, "checkpoint": "unused"}.items():
        trial.set_user_attr(name, attribute)
    study.tell(trial, value)


def test_optimize_for_changes_the_chosen_model_when_latencies_differ(digits: Digits) -> None:
    job = digits.job("optimize-for", space=tiny_space())
    study = open_study(StudyStore(job.storage(), job.prefix), job.space, seed=0)
    warm = tiny_space().warm_start()
    study.ask()  # the warm start, left aside
    add_trial(study, job, warm | {"width": 8}, value=0.99, latency=4.0)
    add_trial(study, job, warm | {"width": 4}, value=0.98, latency=1.0)
    images = ImageCache(job.records, job.labels, job.storage())

    chosen = {}
    for mode in OptimizeFor:
        result = summarise(dataclasses.replace(job, settings=SearchSettings(optimize_for=mode)), images)
        assert isinstance(result.candidate.config.architecture, ResidualCNNConfig)
        chosen[mode] = (result.chosen.number, result.candidate.config.architecture.width)
        assert [point.trial for point in result.front] == [2, 1]
    assert chosen == {
        OptimizeFor.HIGH_ACCURACY: (1, 8),
        OptimizeFor.BALANCED: (1, 8),
        OptimizeFor.LOW_LATENCY: (2, 4),
    }


def test_the_journal_survives_in_object_storage(s3_storage: Storage, tmp_path: Path) -> None:
    space = tiny_space()
    first = StudyStore(s3_storage, "runs/s3/u", tmp_path / "node-a")
    study = open_study(first, space, seed=0)
    trial = study.ask()
    space.suggest(trial)
    study.tell(trial, 0.5)
    first.push()

    fresh_node = StudyStore(s3_storage, "runs/s3/u", tmp_path / "node-b")
    assert not fresh_node.path.exists()
    restored = open_study(fresh_node, space, seed=0)
    assert [(t.number, t.value) for t in restored.get_trials()] == [(0, 0.5)]
    assert fresh_node.path.read_bytes().startswith(first.path.read_bytes()), "restored, then appended to"

    elsewhere = StudyStore(s3_storage, "runs/s3/other", tmp_path / "node-b")
    elsewhere.path.write_bytes(first.path.read_bytes())  # a stale journal another run left at this path
    assert open_study(elsewhere, space, seed=0).get_trials()[0].state == optuna.trial.TrialState.WAITING


# --- multi-label, through the whole pipeline ----------------------------------------------------


def multi_label_csv(digits: Digits, folder: Path) -> Path:
    """Each digit image, written out as a file, with two labels: even/odd and small/large."""
    rows = []
    records = digits.dataset.records
    images = read_uris([record.uri for record in records], digits.storage.settings)
    for number, (record, data) in enumerate(zip(records, images, strict=True)):
        digit = int(record.labels[0].removeprefix("digit_"))
        path = folder / f"{number}.png"
        path.write_bytes(data)
        rows.append(f"{path},{'even' if digit % 2 == 0 else 'odd'},{'small' if digit < 5 else 'large'}\n")
    index = folder / "multi.csv"
    index.write_text("".join(rows))
    return index


@pytest.mark.training
def test_multi_label_trains_and_evaluates(digits: Digits, tmp_path: Path) -> None:
    storage = Storage(f"file://{tmp_path / 'storage'}")
    dataset = import_dataset(str(multi_label_csv(digits, tmp_path)), "parity", storage, task=Task.MULTI_LABEL)
    assert {len(record.labels) for record in dataset.records if record.split != "unassigned"} == {2}
    space = dataclasses.replace(tiny_space(), epochs=(6, 8), preprocess=PreprocessConfig(size=8))
    run = RunLocation("ns", "multi", "u1")

    card = train_evaluate_export(
        storage, "parity", dataset.version, run, LogReporter(), search=SearchSettings(space=space, max_trials=2)
    )

    assert card.task == "MultiLabel"
    assert card.labels == ["even", "large", "odd", "small"]
    assert card.metrics.validation_metric == "validationAveragePrecision"
    assert card.metrics.validation_accuracy is None
    assert card.final_fit.retrained is True
    assert (card.metrics.test_average_precision or 0) > 0.7
    evaluation = storage.read_json(f"{run.prefix}/model/evaluation.json")
    assert evaluation["task"] == "MultiLabel"
    assert evaluation["confusionMatrix"] is None
    predictions = SplitPredictions.from_npz(storage.read_bytes(f"{run.prefix}/model/test_predictions.npz"))
    assert predictions.multi_label
    assert not np.allclose(predictions.scores.sum(axis=1), 1.0), "sigmoid scores, not a softmax"
    config = storage.read_bytes(f"{run.prefix}/triton/autovision/config.pbtxt").decode()
    assert 'key: "multi_label"' in config
    assert 'string_value: "true"' in config


@pytest.mark.training
def test_records_of_a_finished_search(digits: Digits) -> None:
    job = digits.job("records", space=tiny_space(), settings=SearchSettings(early_stopping=False, max_trials=2))
    run_search_worker(job)
    rows = [TrialRecord.of(trial).to_json() for trial in study_trials(job)]
    assert [row["trial"] for row in rows] == [0, 1]
    for row in rows:
        assert row["architecture"] == "residual_cnn"
        assert row["resolution"] == 8
        assert row["latencyMs"] > 0
        assert 0 <= row["value"] <= 1
        assert row["state"] in ("Complete", "Pruned", "StoppedByBudget")


def test_workers_share_the_cores_for_threads_and_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "available_cores", lambda: 16)
    assert [worker.cores_per_worker(workers) for workers in (1, 3, 8, 32)] == [16, 5, 2, 1]


@pytest.mark.training
def test_two_worker_processes_share_one_budget(tmp_path: Path) -> None:
    storage = Storage(f"file://{tmp_path / 'storage'}")
    dataset = import_dataset(str(digits_subset_zip(tmp_path / "digits.zip", per_class=24)), "digits", storage)
    settings = SearchSettings(early_stopping=False, workers=2)  # worker 1 is a process of its own
    prefix = "runs/test/shared/u"
    # 12 milli node-hours (34.6 s of search): worker 1 is spawned and imports torch before it asks for a trial.
    job = search_job(storage, dataset.records, prefix, space=tiny_space(slow=True), budget=12, settings=settings)

    run_workers(job, ImageCache(job.records, job.labels, storage), LogReporter())

    store = StudyStore(storage, job.prefix)
    trials = optuna.load_study(study_name="search", storage=store.optuna_storage()).get_trials()
    assert {trial.user_attrs["worker"] for trial in trials} == {0, 1}
    # Each worker's first step measures its pace before any trial of the configuration has reported one.
    attributes = [trial.user_attrs for trial in trials if trial.user_attrs.get("stepSeconds") is not None]
    probes = sorted(attrs["stepSeconds"] * (1 + attrs["finishSteps"]) for attrs in attributes)[-2:]
    assert spent_seconds(trials) <= job.plan.search_seconds + BUDGET_UNIT_SECONDS + sum(probes)
    assert all(trial.state != optuna.trial.TrialState.RUNNING for trial in trials)
