"""The search's records of the shared study: claims on the budget, spending, progress."""

from __future__ import annotations

import time

import optuna

from autovision.search.budget import committed
from autovision.search.records import claims, spent_seconds


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
