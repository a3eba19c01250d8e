"""One trial's training: the uint8 image cache, augmentation and mixing, multi-label, determinism and resume."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from autovision.data.importer import import_dataset
from autovision.preprocess import PreprocessConfig, preprocess_bytes
from autovision.search.budget import BudgetGate, Claim
from autovision.storage import Storage, read_uris
from autovision.train import images
from autovision.train.augment import augment, mix
from autovision.train.ema import WeightAverage
from autovision.train.families.efficientnet_lite import (
    EfficientNetLite,
    EfficientNetLiteConfig,
    build_efficientnet_lite,
)
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.images import ImageSet, decode_pixels, load_images
from autovision.train.trainer import (
    Acceleration,
    EpochResult,
    StepGuard,
    TrainConfig,
    TrialCheckpoint,
    TrialResult,
    learning_rate_factor,
    loss_of,
    predict_logits,
    restore_model,
    train_trial,
    validation_score,
)
from tests.support.search import digits_subset_zip

# Every stochastic part on: augmentation, flips, both mixes, dropout, EMA.
BUSY = TrainConfig(
    epochs=3,
    batch_size=32,
    augment=0.5,
    flip=True,
    mixup=0.2,
    cutmix=1.0,
    ema=0.9,
    architecture=ResidualCNNConfig(width=4, stages=2, dropout=0.3),
)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Storage, dict[str, ImageSet]]:
    folder = tmp_path_factory.mktemp("trainer")
    storage = Storage(f"file://{folder / 'storage'}")
    dataset = import_dataset(str(digits_subset_zip(folder / "digits.zip", per_class=20)), "digits", storage)
    labels = dataset.records.label_set()
    sets = {
        split: load_images(dataset.records.where_split(split), labels, PREPROCESS.size, storage)
        for split in ("train", "validation")
    }
    return storage, sets


def test_cache_normalises_to_exactly_the_shared_preprocessing(digits: tuple[Storage, dict[str, ImageSet]]) -> None:
    storage, sets = digits
    images = sets["validation"]
    for preprocess in (PREPROCESS, PreprocessConfig(size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))):
        expected = np.stack([preprocess_bytes(data, preprocess) for data in read_uris(images.uris, storage.settings)])
        assert images.pixels.dtype == torch.uint8
        np.testing.assert_array_equal(images.inputs(preprocess).numpy(), expected)
        batched = torch.cat(list(images.batches(preprocess, size=7)))
        np.testing.assert_array_equal(batched.numpy(), expected)


def test_the_cache_keeps_source_order_across_read_chunks_and_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = Storage(f"file://{tmp_path / 'storage'}")
    records = import_dataset(str(digits_subset_zip(tmp_path / "d.zip", per_class=10)), "d", storage).records
    uris = [record.uri for record in records]
    monkeypatch.setattr(images, "READ_CHUNK", 7)  # 100 images: 15 chunks, the last one short,
    monkeypatch.setattr(images, "DECODE_BATCH", 3)  # each decoded as batches of 3, 3 and 1

    one, three = (load_images(records, records.label_set(), 8, storage, workers=n) for n in (1, 3))
    expected = np.stack([decode_pixels(data, 8) for data in read_uris(uris, storage.settings)])
    np.testing.assert_array_equal(one.pixels.numpy(), expected)
    np.testing.assert_array_equal(three.pixels.numpy(), expected)
    assert one.uris == three.uris == uris


def test_targets_are_one_hot_rows(digits: tuple[Storage, dict[str, ImageSet]]) -> None:
    targets = digits[1]["train"].targets
    assert targets.shape == (len(digits[1]["train"]), 10)
    assert torch.equal(targets.sum(dim=1), torch.ones(len(targets)))


def test_augmentation_and_mixing_keep_shapes_and_target_mass() -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 3, 8, 8)
    targets = torch.eye(4)[torch.arange(16) % 4]
    augmented = augment(x, BUSY.augment, BUSY.flip)
    assert augmented.shape == x.shape
    assert not torch.equal(augmented, x)
    assert torch.equal(augment(x, 0.0, flip=False), x), "magnitude 0 without flips leaves the batch alone"
    for mixup, cutmix in ((BUSY.mixup, 0.0), (0.0, BUSY.cutmix)):
        mixed, soft = mix(x, targets, mixup, cutmix)
        assert mixed.shape == x.shape
        assert not torch.equal(mixed, x)
        torch.testing.assert_close(soft.sum(dim=1), torch.ones(16))
    assert mix(x, targets, 0.0, 0.0) == (x, targets), "alpha 0 turns both mixes off"


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    for schedule in ("cosine", "linear"):
        factor = learning_rate_factor(TrainConfig(epochs=4, schedule=schedule, warmup_epochs=1.0), 10)
        assert factor(0) == pytest.approx(0.1)
        assert factor(9) == pytest.approx(1.0)
        assert factor(39) < 0.05
        assert factor(40) == pytest.approx(0.0)


def test_multi_label_loss_and_score() -> None:
    truth = np.array([[True, False, True], [False, True, False]])
    good = np.where(truth, 4.0, -4.0).astype(np.float32)
    assert validation_score(good, truth, multi_label=True) == pytest.approx(1.0)
    assert validation_score(-good, truth, multi_label=True) <= 0.5
    targets = torch.from_numpy(truth.astype(np.float32))
    low, high = (
        loss_of(torch.from_numpy(good), targets, True, 0.0),
        loss_of(torch.from_numpy(-good), targets, True, 0.0),
    )
    assert low < 0.05 < high


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [tensor.clone() for tensor in model.state_dict().values()]


def curve(result: TrialResult) -> list[tuple[float | None, float | None]]:
    return [(entry["trainLoss"], entry["validationScore"]) for entry in result.history]


@pytest.mark.training
def test_training_is_deterministic_for_a_seed_and_learns(
    digits: tuple[Storage, dict[str, ImageSet]], tmp_path: Path
) -> None:
    storage, sets = digits
    runs = [
        train_trial(
            sets["train"], sets["validation"], BUSY, PREPROCESS, checkpoint=TrialCheckpoint(storage, f"det/{i}.pt")
        )
        for i in range(2)
    ]
    assert curve(runs[0]) == curve(runs[1])
    for first, second in zip(weights(runs[0].model), weights(runs[1].model), strict=True):
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    plain = TrainConfig(epochs=10, batch_size=32, architecture=ResidualCNNConfig(width=8, stages=2))
    trained = train_trial(
        sets["train"], sets["validation"], plain, PREPROCESS, checkpoint=TrialCheckpoint(storage, "learn.pt")
    )
    assert trained.best_score is not None
    assert trained.best_score > 0.8


@pytest.mark.training
def test_an_interrupted_trial_resumes_to_the_same_weights(digits: tuple[Storage, dict[str, ImageSet]]) -> None:
    storage, sets = digits
    whole = train_trial(
        sets["train"], sets["validation"], BUSY, PREPROCESS, checkpoint=TrialCheckpoint(storage, "whole.pt")
    )
    checkpoint = TrialCheckpoint(storage, "resumed.pt")
    first = train_trial(
        sets["train"], sets["validation"], BUSY, PREPROCESS, checkpoint=checkpoint, on_epoch=lambda e: e.epoch == 1
    )
    assert first.epochs_trained == 1
    resumed = train_trial(sets["train"], sets["validation"], BUSY, PREPROCESS, checkpoint=checkpoint)

    assert resumed.starts == [0, 1]
    assert curve(resumed) == curve(whole)
    for a, b in zip(weights(whole.model), weights(resumed.model), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.training
def test_max_seconds_starts_no_step_that_would_cross_it(digits: tuple[Storage, dict[str, ImageSet]]) -> None:
    storage, sets = digits
    result = train_trial(
        sets["train"],
        sets["validation"],
        dataclasses.replace(BUSY, epochs=50),
        PREPROCESS,
        checkpoint=TrialCheckpoint(storage, "budget.pt"),
        max_seconds=1e-9,
    )
    assert result.epochs_trained == 0
    assert result.stopped_inside_epoch


@pytest.mark.training
def test_without_validation_the_last_epoch_is_kept(digits: tuple[Storage, dict[str, ImageSet]]) -> None:
    storage, sets = digits
    both = ImageSet.concat(sets["train"], sets["validation"])
    result = train_trial(both, None, BUSY, PREPROCESS, checkpoint=TrialCheckpoint(storage, "final.pt"))
    assert (result.best_score, result.best_epoch, result.epochs_trained) == (None, 3, 3)


@pytest.mark.training
def test_lite_fine_tunes_with_frozen_stages(digits: tuple[Storage, dict[str, ImageSet]]) -> None:
    storage, sets = digits
    config = TrainConfig(
        epochs=1, batch_size=16, architecture=EfficientNetLiteConfig(frozen_stages=6), learning_rate=1e-3
    )
    small = ImageSet(sets["train"].pixels[:32], sets["train"].targets[:32], sets["train"].uris[:32])
    imagenet = build_efficientnet_lite(EfficientNetLiteConfig(), 10)
    result = train_trial(small, None, config, PREPROCESS, checkpoint=TrialCheckpoint(storage, "lite.pt"))
    assert isinstance(result.model, EfficientNetLite)
    for stage in (0, 5):
        for before, after in zip(
            imagenet.stages[stage].state_dict().values(), result.model.stages[stage].state_dict().values(), strict=True
        ):
            torch.testing.assert_close(before, after, rtol=0, atol=0)
    head = result.model.stages[7].parameters()
    assert any(not torch.equal(a, b) for a, b in zip(imagenet.stages[7].parameters(), head, strict=True))


def test_the_weight_average_copies_first_then_warms_up_its_decay() -> None:
    linear, norm = torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)
    model = torch.nn.Sequential(linear, norm)
    average = WeightAverage(model, decay=0.9)

    def averaged(name: str) -> torch.Tensor:
        tensor: torch.Tensor = average.module.state_dict()[name]
        return tensor

    torch.nn.init.constant_(linear.weight, 1.0)
    average.update(model)
    torch.testing.assert_close(averaged("0.weight"), torch.ones(2, 2))

    torch.nn.init.constant_(linear.weight, 3.0)
    model.train()(torch.randn(4, 2))  # batch norm counts a batch and moves its running statistics
    average.update(model)
    keep = 2 / 11  # min(0.9, (1 + 1) / (10 + 1)) after one update
    torch.testing.assert_close(averaged("0.weight"), torch.full((2, 2), keep * 1 + (1 - keep) * 3))
    torch.testing.assert_close(averaged("1.running_mean"), (1 - keep) * model.state_dict()["1.running_mean"])
    assert int(averaged("1.num_batches_tracked")) == 1, "counters follow the model"
    assert average.rate() == pytest.approx(3 / 12)

    resumed = WeightAverage(model, decay=0.9)
    resumed.load_state_dict(average.state_dict())
    assert resumed.updates == 2
    torch.testing.assert_close(resumed.module.state_dict()["0.weight"], averaged("0.weight"))
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(model, decay=1.0)


@pytest.mark.training
def test_every_acceleration_trains_on_the_cpu_as_a_gpu_run_would(digits: tuple[Storage, dict[str, ImageSet]]) -> None:
    """channels_last, bf16 autocast, fused optimiser and torch.compile together: the path a GPU run takes."""
    storage, sets = digits
    every = Acceleration(channels_last=True, bf16=True, fused_optimizer=True, compile=True)
    checkpoint = TrialCheckpoint(storage, "accelerated.pt")
    config = dataclasses.replace(BUSY, epochs=10, mixup=0.0, cutmix=0.0, augment=0.0, flip=False)
    result = train_trial(
        sets["train"], sets["validation"], config, PREPROCESS, checkpoint=checkpoint, acceleration=every
    )

    assert result.epochs_trained == 10
    assert result.best_score is not None
    assert result.best_score > 0.3, f"it learns (chance is 0.1): {result.history}"
    restored = restore_model(config, 10, checkpoint)  # the saved keys are the plain model's, not the compiled one's
    inputs = sets["validation"].inputs(PREPROCESS)
    torch.testing.assert_close(
        torch.from_numpy(predict_logits(restored, inputs)), torch.from_numpy(predict_logits(result.model, inputs))
    )


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


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    clock = FakeTime()
    monkeypatch.setattr("autovision.train.trainer.time", clock)
    return clock


def _gated_trial(
    digits: tuple[Storage, dict[str, ImageSet]],
    clock: FakeTime,
    gate: BudgetGate,
    later_steps_after: list[float],
    on_epoch: Callable[[EpochResult], bool] | None = None,
) -> TrialResult:
    """A trial under ``gate`` whose first steps cost ``later_steps_after`` (fake seconds), then SLOW_STEP each."""
    storage, sets = digits
    costs = iter(later_steps_after)

    def slowed(used: float, pace: float | None, left: int) -> bool:
        clock.sleep(next(costs, SLOW_STEP))  # the step's cost: counted in the pace the trainer measures
        return gate.may_step(used, pace, left)

    return train_trial(
        sets["train"],
        sets["validation"],
        CONFIG,
        PREPROCESS,
        checkpoint=TrialCheckpoint(storage, "gated.pt"),
        step_guard=slowed,
        on_epoch=on_epoch,
    )


@pytest.mark.training
def test_a_slowed_trial_stops_inside_an_epoch_at_the_budget(
    digits: tuple[Storage, dict[str, ImageSet]], fake_time: FakeTime
) -> None:
    limit = 1.8  # a slowed step costs 0.2 s, 0.25 s with the margin; a finish of 3 steps is claimed
    gate = BudgetGate(limit, OneTrialLedger(), fake_time.perf_counter, finish=3.0)
    result = _gated_trial(digits, fake_time, gate, [])
    assert gate.stopped
    assert result.stopped_inside_epoch
    [entry] = result.history
    assert 2 <= entry["steps"] < 10, "stopped inside the first epoch"  # type: ignore[operator]
    assert entry["validationScore"] is not None, "what it learned was validated"
    assert result.seconds_used + 3.0 * SLOW_STEP <= limit + 1e-9, "within the budget, with its finish reserved"
    state = TrialCheckpoint(digits[0], "gated.pt").load()
    assert state is not None
    assert state["inside_epoch"]["step"] == entry["steps"]


@pytest.mark.training
def test_a_slow_first_step_is_charged_but_does_not_set_the_pace(
    digits: tuple[Storage, dict[str, ImageSet]], fake_time: FakeTime
) -> None:
    """A GPU's first step warms up (20 s against 1.6 s later on an H200): counted in the pace, it made
    the gate stop a trial after one step although its epochs fitted the budget many times over."""
    warmup, limit = 20 * SLOW_STEP, 8.0
    gate = BudgetGate(limit, OneTrialLedger(), fake_time.perf_counter, finish=3.0)
    paces: list[float | None] = []

    def record_pace(epoch: EpochResult) -> bool:
        paces.append(epoch.step_seconds)
        return False

    result = _gated_trial(digits, fake_time, gate, [warmup + SLOW_STEP], on_epoch=record_pace)
    steps = sum(entry["steps"] or 0 for entry in result.history)
    assert steps >= 10, f"the warm-up stopped the trial after {steps} steps"
    assert paces[0] == pytest.approx(SLOW_STEP), "the pace is the steps after the warm-up"
    assert result.seconds_used <= limit + 1e-9, "the warm-up is still charged"
    assert result.seconds_used >= warmup


@pytest.mark.training
def test_a_mid_epoch_checkpoint_resumes_to_the_same_weights(digits: tuple[Storage, dict[str, ImageSet]]) -> None:
    storage, sets = digits
    whole = train_trial(sets["train"], None, CONFIG, PREPROCESS, checkpoint=TrialCheckpoint(storage, "unbroken.pt"))
    steps = iter(range(1_000))
    stopped = train_trial(
        sets["train"],
        None,
        CONFIG,
        PREPROCESS,
        checkpoint=TrialCheckpoint(storage, "parts.pt"),
        step_guard=lambda used, pace, left: next(steps) < 13,  # the 4th step of the second epoch
    )
    assert stopped.stopped_inside_epoch
    resumed = train_trial(sets["train"], None, CONFIG, PREPROCESS, checkpoint=TrialCheckpoint(storage, "parts.pt"))
    assert not resumed.stopped_inside_epoch
    assert [entry["epoch"] for entry in resumed.history] == [1, 2]
    assert resumed.history[-1]["trainLoss"] == pytest.approx(whole.history[-1]["trainLoss"], rel=1e-6)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class PreemptedError(Exception):
    """The node a run trained on was lost."""


@pytest.mark.training
def test_periodic_checkpoints_go_on_exactly_and_a_lost_run_resumes_from_the_last(
    digits: tuple[Storage, dict[str, ImageSet]], fake_time: FakeTime
) -> None:
    storage, sets = digits
    whole = train_trial(sets["train"], None, CONFIG, PREPROCESS, checkpoint=TrialCheckpoint(storage, "unbroken.pt"))
    every = 3 * SLOW_STEP - 1e-9  # a checkpoint every third step, inside the epochs too
    lefts: list[int] = []

    def lost_in_the_second_epoch(used: float, pace: float | None, left: int) -> bool:
        fake_time.sleep(SLOW_STEP)
        lefts.append(left)
        if lefts.count(max(lefts)) == 2 and left <= max(lefts) // 2:  # past the middle of the second epoch
            raise PreemptedError
        return True

    def train(step_guard: StepGuard | None) -> TrialResult:
        return train_trial(
            sets["train"],
            None,
            CONFIG,
            PREPROCESS,
            checkpoint=TrialCheckpoint(storage, "periodic.pt"),
            step_guard=step_guard,
            checkpoint_every_s=every,
        )

    with pytest.raises(PreemptedError):
        train(lost_in_the_second_epoch)
    state = TrialCheckpoint(storage, "periodic.pt").load()
    assert state is not None
    assert state["epoch"] == 1, "lost in the second epoch"
    assert state["inside_epoch"] is not None, "a checkpoint inside it, not only at its start"
    assert state["inside_epoch"]["step"] >= 2
    resumed = train(None)
    assert not resumed.stopped_inside_epoch
    assert [entry["epoch"] for entry in resumed.history] == [1, 2]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
