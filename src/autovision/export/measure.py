"""Each exported file run by its own runtime: its logits on the test split and its single-thread latency.

Latency is what one image costs on one CPU thread, batch 1: ``LATENCY_RUNS`` timed
calls after ``LATENCY_WARMUP`` untimed ones, so measuring is bounded in time
whatever the test split's size. The figures (``autovision.evaluate.formats``) go into
evaluation.json and the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime

from autovision.evaluate.formats import FormatRun
from autovision.export.onnx_export import INFERENCE_BATCH, ONNX_INPUT, ONNX_OUTPUT
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


def run_onnx(name: str, path: Path, inputs: FloatArray) -> FormatRun:
    """An ONNX file in ONNX Runtime on one thread: logits in batches, latency on the first image alone."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def logits(batch: FloatArray) -> FloatArray:
        result: FloatArray = session.run([ONNX_OUTPUT], {ONNX_INPUT: batch.astype(np.float32)})[0]
        return result

    batches = [logits(inputs[start : start + INFERENCE_BATCH]) for start in range(0, len(inputs), INFERENCE_BATCH)]
    image = inputs[:1]
    return FormatRun(
        name=name,
        file=path.name,
        size_bytes=size_bytes(path),
        logits=np.concatenate(batches).astype(np.float32),
        latency_ms=timed_calls(lambda: logits(image)) if len(image) else (),
    )


def run_edge(fmt: EdgeFormat, path: Path, inputs: FloatArray, executorch_venv: Path) -> FormatRun:
    """An edge file in its runtime on one thread (LiteRT, ExecuTorch); Core ML only by size, it predicts on macOS."""
    if fmt is EdgeFormat.COREML:
        return FormatRun(name=str(fmt), file=path.name, size_bytes=size_bytes(path), logits=None)
    if fmt in (EdgeFormat.TFLITE, EdgeFormat.TFLITE_INT8):
        from autovision.export.tflite import tflite_latency, tflite_logits

        logits = tflite_logits(path, inputs)
        latency = tflite_latency(path, inputs, LATENCY_RUNS, LATENCY_WARMUP) if len(inputs) else ()
    else:
        from autovision.export.executorch_export import executorch_latency, executorch_logits, executorch_python

        python = executorch_python(executorch_venv)
        logits = executorch_logits(path, inputs, python)
        latency = executorch_latency(path, inputs, python, LATENCY_RUNS, LATENCY_WARMUP) if len(inputs) else ()
    return FormatRun(name=str(fmt), file=path.name, size_bytes=size_bytes(path), logits=logits, latency_ms=latency)
