"""Each exported file run by its own runtime: its logits on the test split and its single-thread latency.

Latency is what one image costs on one CPU thread, batch 1: ``LATENCY_RUNS`` timed
calls after ``LATENCY_WARMUP`` untimed ones, so measuring is bounded in time
whatever the test split's size. The figures (``autovision.evaluate.formats``) go into
evaluation.json and the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnxruntime

from autovision.evaluate.formats import FormatRun
from autovision.export.onnx_export import ONNX_OUTPUT, session_outputs
from autovision.preprocess import FloatArray
from autovision.resources import EdgeFormat

LATENCY_WARMUP = 5
LATENCY_RUNS = 50


def timed_calls(
    call: Callable[[], object], runs: int = LATENCY_RUNS, warmup: int = LATENCY_WARMUP
) -> tuple[float, ...]:
    """Milliseconds of each of ``runs`` calls, after ``warmup`` untimed ones (first-call allocations left out)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return tuple(times)


def size_bytes(path: Path) -> int:
    """A file's size, or the total of a directory's files (ExecuTorch, Core ML packages)."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_onnx(name: str, path: Path, inputs: Iterable[FloatArray]) -> FormatRun:
    """An ONNX file in ONNX Runtime on one thread: logits batch by batch (``inputs`` are batches, read once),
    latency on the first image alone."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def logits(batch: FloatArray) -> FloatArray:
        return session_outputs(session, batch, (ONNX_OUTPUT,))[ONNX_OUTPUT]

    all_logits, image = logits_and_first_image(inputs, logits)
    return FormatRun(
        name=name,
        file=path.name,
        size_bytes=size_bytes(path),
        logits=all_logits,
        latency_ms=() if image is None else timed_calls(lambda: logits(image)),
    )


def run_edge(fmt: EdgeFormat, path: Path, inputs: Iterable[FloatArray], executorch_venv: Path) -> FormatRun:
    """An edge file in its runtime on one thread (LiteRT, ExecuTorch), batch by batch (``inputs`` are batches,
    read once); Core ML only by size, it predicts on macOS."""
    if fmt is EdgeFormat.COREML:
        return FormatRun(name=str(fmt), file=path.name, size_bytes=size_bytes(path), logits=None)
    if fmt in (EdgeFormat.TFLITE, EdgeFormat.TFLITE_INT8):
        from autovision.export.tflite import LiteRTClassifier

        classifier = LiteRTClassifier(path)  # one interpreter for every batch and the latency
        logits, image = logits_and_first_image(inputs, classifier.logits)
        latency = () if image is None else classifier.latency(image, LATENCY_RUNS, LATENCY_WARMUP)
    else:
        from autovision.export.executorch_export import executorch_python, executorch_run

        python = executorch_python(executorch_venv)
        logits, latency = executorch_run(path, inputs, python, LATENCY_RUNS, LATENCY_WARMUP)
    return FormatRun(name=str(fmt), file=path.name, size_bytes=size_bytes(path), logits=logits, latency_ms=latency)


def logits_and_first_image(
    inputs: Iterable[FloatArray], logits: Callable[[FloatArray], FloatArray]
) -> tuple[FloatArray, FloatArray | None]:
    """``logits`` over every batch of ``inputs`` (read once), joined, and the first image (the latency input)."""
    batches: list[FloatArray] = []
    image: FloatArray | None = None
    for batch in inputs:
        if image is None and len(batch):
            image = batch[:1].copy()
        batches.append(logits(batch))
    joined = np.concatenate(batches).astype(np.float32) if batches else np.zeros((0, 0), dtype=np.float32)
    return joined, image
