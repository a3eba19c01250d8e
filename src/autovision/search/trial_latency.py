"""A trial's latency, the search's second objective, measured where the model will run.

A Cloud target times the trained PyTorch model at batch 1 on the worker's device.
An Edge target converts the trial's model to the ``.tflite`` file a phone app would
load (fp32, with its metadata and labels, as the run writes it) and times it in the
LiteRT interpreter on one CPU thread of the training machine. One CPU thread is an
honest stand-in for a phone's CPU, not a phone: it ranks models as a small core
would (by the work each inference does, with XNNPACK's kernels), but the
milliseconds are this machine's, not a device's. The ``.tflite`` size in bytes is
recorded with it. The worker charges the conversion and the timing to the trial's
budget, as it charges every other second the trial costs.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autovision.export.edge import EdgeUnavailableError, check_edge_formats
from autovision.export.edge_files import EdgeInput
from autovision.export.executorch_export import DEFAULT_VENV
from autovision.preprocess import PreprocessConfig
from autovision.resources import EdgeFormat, TrainingTarget
from autovision.search.records import LatencyMethod
from autovision.train.trainer import batch1_latency_ms

# As many timed calls as the PyTorch measurement makes: a trial's latency is a ranking, kept cheap.
TIMED_RUNS = 30
WARMUP_RUNS = 5


@dataclass(frozen=True)
class TrialLatency:
    """What a trial's latency measurement found: milliseconds (median), how, and the ``.tflite`` size if converted."""

    milliseconds: float
    method: LatencyMethod
    model_bytes: int | None = None


def check_target(target: TrainingTarget) -> None:
    """Before any training: an Edge target needs the LiteRT converter and interpreter (the edge extra).

    Raises ``EdgeUnavailableError`` with one message saying so and how to install it.
    """
    if target is not TrainingTarget.EDGE:
        return
    try:
        check_edge_formats([EdgeFormat.TFLITE], DEFAULT_VENV)  # the venv is ExecuTorch's, not asked for here
    except EdgeUnavailableError as error:
        raise EdgeUnavailableError(
            f"target Edge converts every trial to tflite and times it in LiteRT: {error}"
        ) from None


def measure_latency(
    model: nn.Module,
    preprocess: PreprocessConfig,
    labels: Sequence[str],
    target: TrainingTarget,
    device: torch.device,
) -> TrialLatency:
    """The trial's latency for ``target``: PyTorch on ``device`` (Cloud), or its ``.tflite`` file in LiteRT (Edge)."""
    if target is TrainingTarget.CLOUD:
        return TrialLatency(batch1_latency_ms(model, preprocess.size, device), LatencyMethod.TORCH)
    return litert_latency(model, preprocess, labels)


def litert_latency(model: nn.Module, preprocess: PreprocessConfig, labels: Sequence[str]) -> TrialLatency:
    """Convert ``model`` (moved to the CPU) to a ``.tflite`` file and time one image in LiteRT on one thread."""
    from autovision.export.tflite import export_tflite, tflite_latency

    size = preprocess.size
    spec = EdgeInput(labels=tuple(labels), size=size, mean=preprocess.mean, std=preprocess.std)
    with tempfile.TemporaryDirectory(prefix="autovision-trial-tflite-") as workdir, _converter_quiet():
        path = export_tflite(model.cpu().eval(), torch.zeros(1, 3, size, size), spec, Path(workdir) / "model.tflite")
        image = np.zeros((1, 3, size, size), dtype=np.float32)
        times = tflite_latency(path, image, TIMED_RUNS, WARMUP_RUNS)
        return TrialLatency(statistics.median(times), LatencyMethod.LITERT, path.stat().st_size)


@contextmanager
def _converter_quiet() -> Iterator[None]:
    """Without litert-torch's progress lines on stdout (about 15 per conversion), which every trial would print."""
    from litert_torch import progress

    loud = progress.console.quiet
    progress.console.quiet = True
    try:
        yield
    finally:
        progress.console.quiet = loud
