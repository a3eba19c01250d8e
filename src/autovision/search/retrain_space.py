"""The search of a run retrained from a base model: only the learning rate and the epochs vary (pure).

Retraining continues the base model on a new dataset version (the old images
plus the newly labelled ones), so its family, architecture, resolution and
preprocessing stay the base's: the exported model then slots in where the
base served, and every trial starts from the base's final weights
(``TrainConfig.initial_weights``). What is worth searching on a budget is how
far to move from those weights: the learning rate (below the base's, which
trained from scratch or from ImageNet) and the epochs (at most the base's).
Everything else (optimiser, schedule, regularisation, augmentation, batch)
stays the base's recipe.

The first trial (``warm_start``) is a tenth of the base's learning rate for a
third of its epochs: a short, gentle fine-tune that even a small budget buys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from optuna.trial import BaseTrial

from autovision.preprocess import PreprocessConfig
from autovision.search.space import Candidate
from autovision.train.models import UserBackboneConfig
from autovision.train.trainer import TrainConfig

# The learning rates searched, as fractions of the base's: from a hundredth to a third.
LEARNING_RATE_FRACTIONS = (0.01, 1 / 3)
# The first trial's: a tenth of the base's learning rate, for a third of its epochs.
WARM_START_FRACTION = 0.1
WARM_START_EPOCHS_DIVISOR = 3


@dataclass(frozen=True)
class RetrainSpace:
    """Trials of the base's configuration that differ only in learning rate and epochs, all starting from the
    weights at ``initial_weights``; ``seed`` is the new run's, ``first_trial`` replaces the warm start."""

    base: TrainConfig
    preprocess: PreprocessConfig
    initial_weights: str
    seed: int = 0
    first_trial: dict[str, Any] | None = None

    @property
    def max_epochs(self) -> int:
        """The base's epochs: a fine-tune never runs longer than the training it continues."""
        return max(1, self.base.epochs)

    @property
    def max_trials(self) -> int | None:
        """No cap: the budget and early stopping end the search."""
        return None

    @property
    def backbones(self) -> tuple[UserBackboneConfig, ...]:
        """None to check: a user backbone's own weights are never read, the base's replace them."""
        return ()

    def learning_rates(self) -> tuple[float, float]:
        """The range of learning rates searched."""
        low, high = LEARNING_RATE_FRACTIONS
        return self.base.learning_rate * low, self.base.learning_rate * high

    def warm_start(self) -> dict[str, Any]:
        """A tenth of the base's learning rate for a third of its epochs (unless ``first_trial`` replaced it)."""
        if self.first_trial is not None:
            return self.first_trial
        epochs = max(1, self.max_epochs // WARM_START_EPOCHS_DIVISOR)
        return {"learning_rate": self.base.learning_rate * WARM_START_FRACTION, "epochs": epochs}

    def cheaper_starts(self) -> list[dict[str, Any]]:
        """The warm start's learning rate for one epoch, if the warm start runs longer."""
        start = self.warm_start()
        return [start | {"epochs": 1}] if start["epochs"] > 1 else []

    def starting_with(self, first_trial: dict[str, Any]) -> RetrainSpace:
        """This space with ``first_trial`` as the study's first trial."""
        return dataclasses.replace(self, first_trial=first_trial)

    def suggest(self, trial: BaseTrial) -> Candidate:
        """The base's configuration with the trial's learning rate and epochs, starting from the base's weights."""
        config = dataclasses.replace(
            self.base,
            learning_rate=trial.suggest_float("learning_rate", *self.learning_rates(), log=True),
            epochs=trial.suggest_int("epochs", 1, self.max_epochs),
            seed=self.seed,
            initial_weights=self.initial_weights,
        )
        return Candidate(config, self.preprocess)
