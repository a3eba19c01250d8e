"""The search's records of the shared study: claims on the budget, spending, progress."""

from __future__ import annotations

import time

import optuna

from autovision.search.budget import committed
from autovision.search.records import LatencyMethod, TrialRecord, claims, search_progress, spent_seconds


def test_a_trial_just_asked_for_claims_only_the_time_since_it_started() -> None:
    study = optuna.create_study()
    done = study.ask()
    done.set_user_attr("seconds", 3.0)
    study.tell(done, 0.5)
    study.ask()  # another worker's trial, before it published anything

    now = time.time()
    assert committed(claims(study.get_trials()), now) < 3.0 + 10.0


def test_a_published_claim_counts_what_it_spent_and_promised() -> None:
    study = optuna.create_study()
    trial = study.ask()
    now = time.time()
    for name, value in {"seconds": 2.0, "ahead": 1.5, "updatedAt": now}.items():
        trial.set_user_attr(name, value)

    [claim] = claims(study.get_trials())
    assert (claim.spent, claim.ahead, claim.at, claim.open) == (2.0, 1.5, now, True)
    assert committed([claim], now) == 3.5
    assert spent_seconds(study.get_trials()) == 2.0


def test_a_trial_record_says_how_its_latency_was_measured_and_its_tflite_size() -> None:
    study = optuna.create_study()
    edge, older = study.ask(), study.ask()
    for name, value in {"latencyMs": 0.4, "latencyMethod": "litert-1-thread", "modelBytes": 22422}.items():
        edge.set_user_attr(name, value)
    older.set_user_attr("latencyMs", 0.9)  # a trial recorded before the method was
    edge_record, older_record = (TrialRecord.of(trial) for trial in study.get_trials())

    assert edge_record.latency_method is LatencyMethod.LITERT
    row = edge_record.to_json()
    assert (row["latencyMs"], row["latencyMethod"], row["modelBytes"]) == (0.4, "litert-1-thread", 22422)
    assert (older_record.latency_method, older_record.model_bytes) == (None, None)


def test_progress_shows_the_best_trials_latency_and_tflite_size() -> None:
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    for name, value in {"bestValue": 0.9, "latencyMs": 0.4, "modelBytes": 22422, "architecture": "cnn"}.items():
        trial.set_user_attr(name, value)
    study.tell(trial, 0.9)

    best = search_progress(study.get_trials(), "accuracy").best
    assert best is not None
    assert (best.latency_ms, best.model_bytes) == (0.4, 22422)
