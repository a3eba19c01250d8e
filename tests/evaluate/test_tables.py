"""The evaluation tables: confusion matrix CSV, summary and per-label rows."""

from __future__ import annotations

from typing import Any

from autovision.evaluate import (
    confusion_matrix_csv,
    per_label_rows,
    summary_rows,
)


def test_tables(single: dict[str, Any]) -> None:
    assert confusion_matrix_csv(single) == "true\\predicted,a,b,c\na,1,1,0\nb,0,1,0\nc,1,0,0\n"
    rows = dict(summary_rows(single | {"int8": {"accuracy": 0.25}}))
    assert rows["accuracy"] == "0.5000"
    assert rows["precision@1 @ 0.50"] == "0.6667"
    assert rows["int8 ONNX accuracy"] == "0.2500"
    assert "ROC-AUC (micro)" not in rows
    assert per_label_rows(single)[0] == ("a", "0.5000", "0.5000", "0.5000", "0.8333", "2")
