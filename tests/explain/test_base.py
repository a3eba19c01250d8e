from __future__ import annotations

import time

import pytest
import torch

from autovision.explain.base import (
    MAX_INPUT_SIZE,
    MAX_STEPS,
    Deadline,
    ExplainedModel,
    ExplainError,
    ExplainSettings,
    ExplainTimeoutError,
    check_inputs,
)


def test_settings_refuse_an_unknown_method_and_steps_or_grid_past_their_caps() -> None:
    with pytest.raises(ExplainError, match="unknown explanation method 'xrai'"):
        ExplainSettings(method="xrai")  # type: ignore[arg-type]
    with pytest.raises(ExplainError, match=f"steps must be in 1..{MAX_STEPS}"):
        ExplainSettings(method="integrated_gradients", steps=MAX_STEPS + 1)
    with pytest.raises(ExplainError, match="grid must be in"):
        ExplainSettings(grid=0)


def test_settings_record_steps_only_for_the_method_that_takes_them() -> None:
    assert ExplainSettings("grad_cam", steps=5, grid=4).describe() == {"method": "grad_cam", "grid": 4}
    assert ExplainSettings("integrated_gradients", 5, 4).describe() == {
        "method": "integrated_gradients",
        "steps": 5,
        "grid": 4,
    }


def test_a_deadline_passes_until_its_time_and_none_never_expires() -> None:
    Deadline().check()
    Deadline.after(60).check()
    expired = Deadline(time.monotonic() - 1)
    with pytest.raises(ExplainTimeoutError, match="time limit"):
        expired.check()


def test_inputs_are_refused_for_a_label_the_model_lacks_or_past_the_size_cap() -> None:
    check_inputs(torch.zeros(2, 3, 8, 8), torch.tensor([0, 2]), num_classes=3)
    with pytest.raises(ExplainError, match=r"labels must be in 0\.\.2"):
        check_inputs(torch.zeros(1, 3, 8, 8), torch.tensor([3]), num_classes=3)
    with pytest.raises(ExplainError, match="one target label per input"):
        check_inputs(torch.zeros(2, 3, 8, 8), torch.tensor([0]), num_classes=3)
    with pytest.raises(ExplainError, match=f"at most {MAX_INPUT_SIZE} px"):
        check_inputs(torch.zeros(1, 3, MAX_INPUT_SIZE + 1, 8), torch.tensor([0]), num_classes=3)


def test_an_explained_model_computes_the_head_on_the_features() -> None:
    model = ExplainedModel(lambda x: x * 2, lambda x: x + 1)
    assert torch.equal(model(torch.ones(1)), torch.tensor([3.0]))
