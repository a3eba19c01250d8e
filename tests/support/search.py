"""Small, fast search set-ups shared by the search tests, and a search worker to run as a subprocess.

    python -m tests.support.search STORAGE_ROOT DATASET VERSION PREFIX MAX_TRIALS [--slow]
        [--node N --nodes M --coordinator HOST:PORT]

runs one node's search workers to their end: the subprocess that the
kill-and-resume test kills with SIGKILL, and the second node of the
multi-node test. S3 settings come from the environment.
"""

from __future__ import annotations

import argparse
import io
import logging
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from autovision.data.record_table import RecordTable
from autovision.data.versions import read_version
from autovision.progress import LogReporter
from autovision.search.job import ImageCache, SearchJob, SearchSettings
from autovision.search.nodes import run_node
from autovision.search.space import SearchSpace
from autovision.storage import Storage


def digits_subset_zip(path: Path, per_class: int, classes: int = 10) -> Path:
    """The first ``per_class`` scikit-learn digits of each class as ``digit_N/NNNN.png``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    taken = dict.fromkeys(range(classes), 0)
    with zipfile.ZipFile(path, "w") as archive:
        for index, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
            if target not in taken or taken[target] >= per_class:
                continue
            taken[target] += 1
            png = io.BytesIO()
            Image.fromarray(np.clip(pixels * 16, 0, 255).astype(np.uint8), mode="L").save(png, format="PNG")
            archive.writestr(f"digit_{target}/{index:04d}.png", png.getvalue())
    return path


def tiny_space(*, slow: bool = False, seed: int = 0) -> SearchSpace:
    """CNNs at the digits' own 8 px (16 px when ``slow``): a trial takes a fraction of a second."""
    return SearchSpace(
        families=("residual_cnn",),
        cnn_resolutions=(16,) if slow else (8,),
        lite_resolutions={},
        widths=(8, 16) if slow else (4, 8),
        stage_counts=(2,),
        depths=(1,),
        kernels=(3,),
        stem_strides=(1,),
        epochs=(3, 4) if slow else (1, 3),
        batch_size=32,
        seed=seed,
    )


def search_job(
    storage: Storage,
    records: RecordTable,
    prefix: str,
    *,
    space: SearchSpace,
    budget: int | None = None,
    settings: SearchSettings | None = None,
) -> SearchJob:
    """A search job over a dataset version's records (single-label)."""
    return SearchJob(
        storage_root=storage.uri(""),
        storage_settings=storage.settings,
        prefix=prefix,
        records=records,
        labels=tuple(records.label_set()),
        multi_label=False,
        space=space,
        budget_milli_node_hours=budget,
        settings=settings or SearchSettings(early_stopping=False),
    )


def run_search_worker(job: SearchJob) -> None:
    """Run this node's part of a job's search to its end in this process."""
    run_node(job, ImageCache(job.records, job.labels, job.storage()), LogReporter())


def wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    """Until ``text`` appears in ``log`` (two minutes at most, and never past the process's exit)."""
    deadline = time.monotonic() + 120
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{text!r} never appeared: {log.read_text()}"
        time.sleep(0.2)


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO)  # a test waits for the line saying this node joins
    """The subprocess entry point (see the module docstring)."""
    parser = argparse.ArgumentParser()
    for name in ("root", "dataset", "version", "prefix"):
        parser.add_argument(name)
    parser.add_argument("max_trials", type=int)
    parser.add_argument("--slow", action="store_true")
    parser.add_argument("--node", type=int, default=0)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--coordinator")
    args = parser.parse_args(argv)
    storage = Storage(args.root)
    records = read_version(storage, args.dataset, args.version)
    settings = SearchSettings(
        early_stopping=False,
        max_trials=args.max_trials,
        node=args.node,
        nodes=args.nodes,
        coordinator=args.coordinator,
    )
    space = tiny_space(slow=args.slow)
    run_search_worker(search_job(storage, records, args.prefix, space=space, settings=settings))


if __name__ == "__main__":
    main(sys.argv[1:])
