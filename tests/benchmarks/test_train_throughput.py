"""The pure parts of benchmarks/train_throughput.py: epoch sizes, steady rates, baseline results, the table."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """The benchmark script as a module (it imports a sibling script, so its folder goes on the path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        yield importlib.import_module("train_throughput")


def test_images_per_epoch_drops_the_last_partial_batch(bench: ModuleType) -> None:
    assert bench.images_per_epoch(150, 64) == 128
    assert bench.images_per_epoch(48, 16) == 48
    assert bench.images_per_epoch(10, 64) == 10  # fewer than a batch: one batch of all of them
    assert bench.images_per_epoch(0, 64) == 0


def test_steady_rate_leaves_out_epoch_one_like_the_baselines(bench: ModuleType) -> None:
    assert bench.steady_rate(128, [30.0, 2.0, 2.0]) == 64.0
    assert bench.steady_rate(128, [4.0]) == 32.0


def test_baseline_outcome_reads_the_json_line_or_says_why_not(bench: ModuleType) -> None:
    ran = bench.baseline_outcome(0, ["epoch 1/2 ...\n", '{"train_img_per_s": 12.5}\n'])
    assert ran == {"train_img_per_s": 12.5}
    failed = bench.baseline_outcome(1, ["Traceback ...\n", "ModuleNotFoundError: No module named 'timm'\n", "\n"])
    assert failed == {"error": "not runnable here: ModuleNotFoundError: No module named 'timm' (exit 1)"}


def test_table_and_ratios(bench: ModuleType) -> None:
    figures = {"first_epoch_s": 9.0, "train_images": 48, "test_top1": 0.5}
    eager = {"train_img_per_s": 30.0, "train_only_img_per_s": 33.0, **figures}
    compiled = {"train_img_per_s": 45.0, "train_only_img_per_s": 50.0, **figures}
    results = {
        "plain": {"train_img_per_s": 10.0, **figures},
        "tuned": {"error": "x"},
        "autovision": eager,
        "autovision_compiled": compiled,
    }
    assert bench.ratios(results) == {
        "autovision_over_plain": 3.0,
        "autovision_over_tuned": None,
        "autovision_train_only_over_plain": 3.3,
        "autovision_train_only_over_tuned": None,
        "autovision_compiled_over_plain": 4.5,
        "autovision_compiled_over_tuned": None,
        "autovision_compiled_train_only_over_plain": 5.0,
        "autovision_compiled_train_only_over_tuned": None,
    }
    rows = bench.table(results)
    assert rows[0].endswith("| AutoVision / this | AutoVision, torch.compile / this | target |")
    assert rows[2] == "| plain | 10.0 | 9.0 | 48 | 0.5 | 3.0x | 4.5x | >= 3.0x |"
    assert rows[3] == "| tuned | x | | | | | | |"
    assert rows[6] == "| AutoVision, torch.compile | 45.0 | 9.0 | 48 | 0.5 | | | |"
    assert len(rows) == 8
    assert all(row.count("|") == rows[0].count("|") for row in rows), "every row has every column"


def test_a_single_autovision_run_still_makes_a_table(bench: ModuleType) -> None:
    figures = {"first_epoch_s": 9.0, "train_images": 48, "test_top1": 0.5}
    results = {
        "plain": {"train_img_per_s": 10.0, **figures},
        "autovision_compiled": {"train_img_per_s": 20.0, "train_only_img_per_s": 21.0, **figures},
    }
    assert bench.ratios(results) == {
        "autovision_compiled_over_plain": 2.0,
        "autovision_compiled_train_only_over_plain": 2.1,
    }
    assert bench.table(results)[2] == "| plain | 10.0 | 9.0 | 48 | 0.5 | 2.0x | >= 3.0x |"
