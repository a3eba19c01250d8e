"""The evaluation of the hand-made single-label predictions, shared by the metric and table tests."""

from __future__ import annotations

from typing import Any

import pytest

from autovision.evaluate import (
    evaluate_predictions,
)
from tests.support.evaluate import SINGLE


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    return evaluate_predictions(SINGLE)
