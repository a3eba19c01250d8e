"""Lower a saved ``torch.export`` program to ExecuTorch and run ``.pte`` files: runs inside ``.venv-executorch``.

ExecuTorch needs numpy 2 while the project's venv keeps numpy below 2 for
tritonserver, so this file imports only torch, numpy and executorch and is run as
a script by ``autovision.export.executorch_export`` with that venv's Python:

    python executorch_worker.py lower PROGRAM.pt2 OUT.pte
    python executorch_worker.py run MODEL.pte INPUTS.npy LOGITS.npy
    python executorch_worker.py time MODEL.pte INPUTS.npy RUNS WARMUP TIMES.npy
"""

from __future__ import annotations

import sys
from pathlib import Path


def lower(program_path: Path, out_path: Path) -> None:
    """Lower with the XNNPACK delegate (the CPU backend phones use) and write the ``.pte`` file."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.load(str(program_path))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    out_path.write_bytes(lowered.buffer)


def run(model_path: Path, inputs_path: Path, out_path: Path) -> None:
    """Run the ``.pte`` file with the ExecuTorch runtime on each input image, one at a time."""
    import numpy as np
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(model_path)).load_method("forward")
    images = torch.from_numpy(np.load(inputs_path))
    rows = [method.execute([image[None].contiguous()])[0].numpy() for image in images]
    np.save(out_path, np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32))


def time_calls(model_path: Path, inputs_path: Path, runs: int, warmup: int, out_path: Path) -> None:
    """Milliseconds of each of ``runs`` calls on the first input image, one thread, after ``warmup`` untimed ones."""
    import time

    import numpy as np
    import torch
    from executorch.runtime import Runtime

    torch.set_num_threads(1)
    method = Runtime.get().load_program(str(model_path)).load_method("forward")
    image = torch.from_numpy(np.load(inputs_path)[:1]).contiguous()
    times = []
    for call in range(warmup + runs):
        start = time.perf_counter()
        method.execute([image])
        if call >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    np.save(out_path, np.asarray(times))


if __name__ == "__main__":
    command, *paths = sys.argv[1:]
    if command == "lower":
        lower(Path(paths[0]), Path(paths[1]))
    elif command == "time":
        time_calls(Path(paths[0]), Path(paths[1]), int(paths[2]), int(paths[3]), Path(paths[4]))
    else:
        run(Path(paths[0]), Path(paths[1]), Path(paths[2]))
