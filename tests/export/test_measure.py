"""Measuring exports: a fixed number of timed calls after untimed warm-up ones, sizes of files and packages."""

from __future__ import annotations

from pathlib import Path

from autovision.export.measure import size_bytes, timed_calls


def test_timed_calls_times_only_the_runs_after_the_warm_up() -> None:
    calls: list[int] = []

    times = timed_calls(lambda: calls.append(1), runs=7, warmup=3)

    assert len(calls) == 10
    assert len(times) == 7
    assert all(ms >= 0 for ms in times)


def test_size_of_a_file_and_of_a_package_directory(tmp_path: Path) -> None:
    (tmp_path / "model.tflite").write_bytes(b"x" * 10)
    package = tmp_path / "executorch"
    (package / "sub").mkdir(parents=True)
    (package / "model.pte").write_bytes(b"x" * 5)
    (package / "sub" / "labels.txt").write_bytes(b"x" * 3)

    assert size_bytes(tmp_path / "model.tflite") == 10
    assert size_bytes(package) == 8
