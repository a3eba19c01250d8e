"""Budget accounting and stopping rules of the search (pure)."""

from __future__ import annotations

import math

import pytest

from autovision.search.budget import BudgetPlan, final_fit_affordable, milli_node_hours, stalled


def test_milli_node_hours_round_up_like_billing() -> None:
    assert milli_node_hours(0) == 0
    assert milli_node_hours(3.6) == 1
    assert milli_node_hours(3.61) == 2
    assert milli_node_hours(180) == 50


def test_plan_keeps_a_share_for_the_final_fit() -> None:
    plan = BudgetPlan.of(50)
    assert plan.total_seconds == pytest.approx(180)
    assert plan.search_seconds == pytest.approx(144)
    assert not plan.search_exhausted(143.9)
    assert plan.search_exhausted(144)
    assert plan.remaining(150) == pytest.approx(30)
    assert plan.remaining(200) == 0
    unbounded = BudgetPlan.of(None)
    assert unbounded.search_seconds == math.inf
    assert not unbounded.search_exhausted(1e9)


def test_final_fit_affordable_scales_with_the_extra_images() -> None:
    # 2 s per epoch on 800 images, 10 epochs on 1000: 25 s.
    assert final_fit_affordable(25.0, 2.0, 10, 800, 200)
    assert not final_fit_affordable(24.9, 2.0, 10, 800, 200)
    assert not final_fit_affordable(math.inf, 2.0, 10, 800, 0), "no validation images: nothing to add"


def test_stalled_after_patience_trials_without_improvement() -> None:
    assert not stalled([], patience=3, min_delta=0.001)
    assert not stalled([0.5, 0.6, 0.6, 0.6], patience=3, min_delta=0.001)
    assert stalled([0.5, 0.6, 0.6, 0.6, 0.6005], patience=3, min_delta=0.001)
    assert not stalled([0.5, 0.6, 0.6, 0.6, 0.62], patience=3, min_delta=0.001)
    assert not stalled([0.5, 1.0, 1.0], patience=3, min_delta=0.001), "a perfect score alone does not stop"
    assert stalled([0.5, 1.0, 1.0, 1.0, 1.0], patience=3, min_delta=0.001)
