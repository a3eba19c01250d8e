"""What every explanation method shares: the explained model, the settings and their bounds (pure).

A method maps a batch of normalised inputs and one target label per input to
non-negative attribution maps at the input's resolution (N, H, W): larger means
the score of that label rests more on that pixel. The model is given split after
its last convolutional stage (``ExplainedModel``), as its family says, so Grad-CAM
reads the feature maps and gradient-based methods run the whole model.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

import torch

from autovision.train.families.base import Stage

MethodName = Literal["grad_cam", "integrated_gradients"]
METHODS: tuple[MethodName, ...] = ("grad_cam", "integrated_gradients")
# Integrated gradients costs one forward and backward pass per step: this caps a request's work.
MAX_STEPS = 256
DEFAULT_STEPS = 32
# Attributions are computed at the model's input size, never larger (the overlay is that size too).
MAX_INPUT_SIZE = 512
# The low-resolution attribution grid's side, and its cap.
DEFAULT_GRID = 8
MAX_GRID = 32


class ExplainError(ValueError):
    """An explanation that cannot be given as asked (unknown label, steps over the cap, input too large)."""


class ExplainTimeoutError(TimeoutError):
    """An explanation that ran past its deadline; nothing of it is returned."""


@dataclass(frozen=True)
class ExplainSettings:
    """Which method explains and how: recorded beside every explanation (evaluation.json, the API)."""

    method: MethodName = "grad_cam"
    steps: int = DEFAULT_STEPS
    grid: int = DEFAULT_GRID

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ExplainError(f"unknown explanation method {self.method!r}: choose one of {', '.join(METHODS)}")
        if not 1 <= self.steps <= MAX_STEPS:
            raise ExplainError(f"steps must be in 1..{MAX_STEPS}, got {self.steps}")
        if not 1 <= self.grid <= MAX_GRID:
            raise ExplainError(f"grid must be in 1..{MAX_GRID}, got {self.grid}")

    def describe(self) -> dict[str, object]:
        """The settings as JSON-ready data; ``steps`` only where the method takes steps."""
        data = asdict(self)
        if self.method == "grad_cam":
            del data["steps"]
        return data


@dataclass(frozen=True)
class ExplainedModel:
    """A classifier split after its last convolutional stage: ``head(features(x))`` are its logits."""

    features: Stage
    head: Stage

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model's logits."""
        return self.head(self.features(inputs))


@dataclass(frozen=True)
class Deadline:
    """A monotonic-clock deadline a long method checks between its chunks of work."""

    at: float | None = None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """A deadline ``seconds`` from now, or none."""
        return cls(None if seconds is None else time.monotonic() + seconds)

    def check(self) -> None:
        """Raise ``ExplainTimeoutError`` once the deadline has passed."""
        if self.at is not None and time.monotonic() > self.at:
            raise ExplainTimeoutError("the explanation ran past its time limit")


class Method(Protocol):
    """One explanation method."""

    def __call__(
        self, model: ExplainedModel, inputs: torch.Tensor, targets: torch.Tensor, deadline: Deadline
    ) -> torch.Tensor:
        """Non-negative attribution maps (N, H, W) for ``targets`` (N label indices) of ``inputs`` (N, C, H, W)."""
        ...


def check_inputs(inputs: torch.Tensor, targets: torch.Tensor, num_classes: int) -> None:
    """Refuse inputs larger than ``MAX_INPUT_SIZE`` and target labels the model does not have."""
    if inputs.ndim != 4 or max(inputs.shape[-2:]) > MAX_INPUT_SIZE:
        raise ExplainError(f"inputs must be NCHW of at most {MAX_INPUT_SIZE} px a side, got {tuple(inputs.shape)}")
    if targets.shape != inputs.shape[:1]:
        raise ExplainError(f"one target label per input: {tuple(targets.shape)} for {inputs.shape[0]} inputs")
    if bool(((targets < 0) | (targets >= num_classes)).any()):
        raise ExplainError(f"target labels must be in 0..{num_classes - 1}")
