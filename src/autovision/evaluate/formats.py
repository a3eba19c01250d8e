"""Per-format figures for evaluation.json (pure): size, single-thread latency, top-1 and agreement.

Every exported file a runtime can run here is run on the whole test split; its
top-1 accuracy and its top-1 agreement with the PyTorch model (the scores the
evaluation rests on) say what a user of that file gets. A file no runtime here
can run (Core ML predicts only on macOS) gets its size and no figures, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autovision.contract.files import ExportedFormatFigures, FormatLatency
from autovision.evaluate.predictions import BoolArray
from autovision.preprocess import FloatArray


@dataclass(frozen=True)
class FormatRun:
    """What running one exported file gave: its logits on the test split and the milliseconds of each timed call.

    ``logits`` is None (and ``latency_ms`` empty) for a file no runtime here can run.
    """

    name: str
    file: str
    size_bytes: int
    logits: FloatArray | None
    latency_ms: tuple[float, ...] = ()


def format_figures(run: FormatRun, truth: BoolArray, reference_scores: FloatArray) -> ExportedFormatFigures:
    """evaluation.json's entry for one format: the top-1 label is right when it is one of the image's labels."""
    figures = ExportedFormatFigures(
        format=run.name, file=run.file, bytes=run.size_bytes, predictions_checked=run.logits is not None
    )
    if run.logits is None:
        return figures
    if run.logits.shape != reference_scores.shape:
        raise ValueError(f"{run.name} returns {run.logits.shape} scores, the PyTorch model {reference_scores.shape}")
    top1 = run.logits.argmax(axis=1)
    if run.latency_ms:
        times = np.asarray(run.latency_ms)
        figures.latency_ms = FormatLatency(
            median=float(np.median(times)), p90=float(np.percentile(times, 90)), runs=len(times)
        )
    if len(top1):
        figures.top1 = float(truth[np.arange(len(top1)), top1].mean())
        figures.top1_agreement = float((top1 == reference_scores.argmax(axis=1)).mean())
    return figures
