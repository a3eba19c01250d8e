"""An exponential moving average of a model's weights, updated every step without waiting for the GPU.

torch's ``AveragedModel`` keeps its update count on the device and reads it back
on every update (two host syncs a step, which leave a GPU idle between steps);
this one counts on the host and updates every floating-point tensor with one
fused ``lerp`` per device and dtype. The decay warms up as TensorFlow's
ExponentialMovingAverage does: min(decay, (1 + n) / (10 + n)) after n updates,
so early, untrained weights are forgotten quickly.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The average of a model's parameters and buffers (batch-norm statistics included) over training steps."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"an EMA decay must lie strictly between 0 and 1, not {decay}")
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def rate(self) -> float:
        """How much of the average the next update keeps."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (the first update copies them)."""
        keep = self.rate() if self.updates else 0.0
        averaged = itertools.chain(self.module.parameters(), self.module.buffers())
        current = itertools.chain(model.parameters(), model.buffers())
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for mine, theirs in zip(averaged, current, strict=True):
            if mine.is_floating_point():
                pair = groups.setdefault((mine.device, mine.dtype), ([], []))
                pair[0].append(mine)
                pair[1].append(theirs.detach())
            else:  # counters such as num_batches_tracked follow the model
                mine.copy_(theirs)
        for mine_list, theirs_list in groups.values():
            torch._foreach_lerp_(mine_list, theirs_list, 1.0 - keep)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count, for a checkpoint."""
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's average."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
