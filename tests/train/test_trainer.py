"""A trial stopped by its step guard inside an epoch: validated, checkpointed there, and resumable from there."""

from __future__ import annotations

import pytest
import torch

from autovision.preprocess import PreprocessConfig
from autovision.search.budget import BudgetGate, Claim
from autovision.storage import Storage
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.images import ImageSet
from autovision.train.trainer import TrainConfig, TrialCheckpoint, train_trial

PREPROCESS = PreprocessConfig(size=8)
# 160 training images in batches of 16: 10 steps an epoch; every stochastic part on.
CONFIG = TrainConfig(
    epochs=2,
    batch_size=16,
    augment=0.5,
    flip=True,
    mixup=0.2,
    ema=0.9,
    architecture=ResidualCNNConfig(width=4, stages=2, dropout=0.3),
)
SLOW_STEP = 0.2


class FakeTime:
    """The trainer's and the gate's clock: it moves only by the slowed steps, so machine load cannot matter."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class OneTrialLedger:
    """The claims of a search with this one trial."""

    def __init__(self) -> None:
        self.claim = Claim(0.0, 0.0, 0.0, True)

    def claims(self) -> list[Claim]:
        return [self.claim]

    def publish(self, claim: Claim) -> None:
        self.claim = claim


def test_a_slowed_trial_stops_inside_an_epoch_at_the_budget(
    digit_images: tuple[Storage, dict[str, ImageSet]], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, sets = digit_images
    clock = FakeTime()
    monkeypatch.setattr("autovision.train.trainer.time", clock)
    limit = 1.8  # a slowed step costs 0.2 s, 0.25 s with the margin; two finishes of 3 steps are claimed
    gate = BudgetGate(limit, OneTrialLedger(), clock.perf_counter, finish=3.0)

    def slowed(used: float, pace: float | None) -> bool:
        clock.sleep(SLOW_STEP)  # the step's cost: counted in the pace the trainer measures
        return gate.may_step(used, pace)

    result = train_trial(
        sets["train"],
        sets["validation"],
        CONFIG,
        PREPROCESS,
        checkpoint=TrialCheckpoint(storage, "slowed.pt"),
        step_guard=slowed,
    )
    assert gate.stopped
    assert result.stopped_inside_epoch
    [entry] = result.history
    assert 2 <= entry["steps"] < 10, "stopped inside the first epoch"  # type: ignore[operator]
    assert entry["validationScore"] is not None, "what it learned was validated"
    assert result.seconds_used + 3.0 * SLOW_STEP <= limit + 1e-9, "within the budget, with its finish reserved"
    state = TrialCheckpoint(storage, "slowed.pt").load()
    assert state is not None
    assert state["inside_epoch"]["step"] == entry["steps"]


def test_a_mid_epoch_checkpoint_resumes_to_the_same_weights(digit_images: tuple[Storage, dict[str, ImageSet]]) -> None:
    storage, sets = digit_images
    whole = train_trial(sets["train"], None, CONFIG, PREPROCESS, checkpoint=TrialCheckpoint(storage, "whole.pt"))
    steps = iter(range(1_000))
    stopped = train_trial(
        sets["train"],
        None,
        CONFIG,
        PREPROCESS,
        checkpoint=TrialCheckpoint(storage, "parts.pt"),
        step_guard=lambda used, pace: next(steps) < 13,  # the 4th step of the second epoch
    )
    assert stopped.stopped_inside_epoch
    resumed = train_trial(sets["train"], None, CONFIG, PREPROCESS, checkpoint=TrialCheckpoint(storage, "parts.pt"))
    assert not resumed.stopped_inside_epoch
    assert [entry["epoch"] for entry in resumed.history] == [1, 2]
    assert resumed.history[-1]["trainLoss"] == pytest.approx(whole.history[-1]["trainLoss"], rel=1e-6)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
