"""Lower a saved ``torch.export`` program to ExecuTorch and run ``.pte`` files: runs inside ``.venv-executorch``.

ExecuTorch needs numpy 2 while the project's venv keeps numpy below 2 for
tritonserver, so this file imports only torch, numpy and executorch and is run as
a script by ``autovision.export.executorch_export`` with that venv's Python:

    python executorch_worker.py lower PROGRAM.pt2 OUT.pte
    python executorch_worker.py run MODEL.pte LOGITS.npy TIMES.npy RUNS WARMUP CHANNELS HEIGHT WIDTH < IMAGES

``run`` does all a format's measuring in one process, since its imports cost tens
of seconds: its images come on stdin, float32 CHW ones back to back, until it closes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def lower(program_path: Path, out_path: Path) -> None:
    """Lower with the XNNPACK delegate (the CPU backend phones use) and write the ``.pte`` file."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.load(str(program_path))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    out_path.write_bytes(lowered.buffer)


def run(model_path: Path, out_path: Path, times_path: Path, shape: tuple[int, ...], *, runs: int, warmup: int) -> None:
    """On one thread, the ``.pte`` file's logits of each image on stdin (float32, ``shape``), one at a time,
    then milliseconds of each of ``runs`` calls on the first image after ``warmup`` untimed ones."""
    import math

    import numpy as np
    import torch
    from executorch.runtime import Runtime

    torch.set_num_threads(1)
    method = Runtime.get().load_program(str(model_path)).load_method("forward")
    logits, first = [], None
    while data := sys.stdin.buffer.read(4 * math.prod(shape)):
        image = torch.from_numpy(np.frombuffer(data, dtype=np.float32).reshape(1, *shape).copy())
        first = image if first is None else first
        logits.append(method.execute([image])[0].numpy())
    np.save(out_path, np.concatenate(logits) if logits else np.zeros((0, 0), dtype=np.float32))
    np.save(times_path, np.asarray([] if first is None else timed_calls(method, first, runs, warmup)))


def timed_calls(method: Any, image: Any, runs: int, warmup: int) -> list[float]:
    """Milliseconds of each of ``runs`` calls on one image, after ``warmup`` untimed ones."""
    import time

    times = []
    for call in range(warmup + runs):
        start = time.perf_counter()
        method.execute([image])
        if call >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return times


if __name__ == "__main__":
    command, *paths = sys.argv[1:]
    if command == "lower":
        lower(Path(paths[0]), Path(paths[1]))
    else:
        shape = tuple(int(side) for side in paths[5:])
        run(Path(paths[0]), Path(paths[1]), Path(paths[2]), shape, runs=int(paths[3]), warmup=int(paths[4]))
