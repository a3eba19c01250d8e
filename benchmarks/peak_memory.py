"""Peak RSS of `dataset describe`, evaluation, the export and `predict-batch` at 2,000 and 20,000 images.

The same measurement as the tests (``tests/support/memory.py``: each step in a fresh process, ``VmHWM``)
printed as a table; ``--unbounded`` also runs evaluation and the export with a budget larger than any
split, so each decodes its whole split at once as they did before batching (the "before" figures).

    .venv/bin/python benchmarks/peak_memory.py [--unbounded] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.memory import (
    BUDGET_BYTES,
    LABELS,
    SIZES,
    import_versions,
    peaks,
    version_args,
)
from tests.support.serving import make_onnx_classifier

# A budget no split reaches: the whole split in one batch, as before.
UNBOUNDED = 1 << 40


def main() -> None:
    """Import the two versions, measure each step at both sizes, print one markdown row per step."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unbounded", action="store_true", help="also measure with an unbounded decode budget")
    parser.add_argument("--workdir", type=Path, help="where the datasets and outputs go (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autovision-peak-") as temporary:
        work = args.workdir or Path(temporary)
        start = time.perf_counter()
        datasets = import_versions(work / "datasets")
        print(f"imported {SIZES} images in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        model = make_onnx_classifier(work / "model.onnx", len(LABELS))
        runs = {
            "dataset describe": ("describe", version_args(datasets)),
            "evaluation": ("evaluate", version_args(datasets, str(BUDGET_BYTES))),
            "export": (
                "export",
                lambda size: [*version_args(datasets, str(BUDGET_BYTES))(size), str(work / f"x{size}")],
            ),
            "predict-batch": (
                "predict-batch",
                lambda size: [str(datasets.csvs[size]), str(model), str(work / f"p{size}")],
            ),
        }
        if args.unbounded:
            runs["evaluation, unbounded"] = ("evaluate", version_args(datasets, str(UNBOUNDED)))
            runs["export, unbounded"] = (
                "export",
                lambda size: [*version_args(datasets, str(UNBOUNDED))(size), str(work / f"u{size}")],
            )
        print(f"| step | {' | '.join(f'peak RSS at {size:,}' for size in SIZES)} | ratio | seconds |")
        print(f"| --- | {' | '.join('---' for _ in SIZES)} | --- | --- |")
        for name, (step, step_args) in runs.items():
            start = time.perf_counter()
            measured = peaks(step, step_args)
            seconds = time.perf_counter() - start
            ratio = measured[max(SIZES)] / measured[min(SIZES)]
            cells = " | ".join(f"{measured[size] / 1024:.0f} MiB" for size in SIZES)
            print(f"| {name} | {cells} | {ratio:.2f}x | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
