"""The scan's on-disk table: rows appended in flushed batches read back as written."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from autovision.data import scan_table
from autovision.data.scan_table import ScanFiles, ScanTable
from autovision.data.validate import ImageFacts


def _facts(number: int) -> ImageFacts:
    return ImageFacts(f"{number:064x}", "png", number, number + 1, 2**64 - 1 - number, 100 + number)


def test_rows_come_back_in_order_with_labels_sorted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_table, "FLUSH_ROWS", 2)
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    with closing(ScanTable(paths[0])) as first:
        for number in range(5):
            first.append(f"cat/{number}.png", ("dog", "cat", "dog"), "test" if number == 1 else None, _facts(number))
    with closing(ScanTable(paths[1])) as second:
        second.append("bird/9.png", (), None, _facts(9))
    assert first.rows == 5
    table = ScanFiles(paths).table()
    assert table.column("file").to_pylist() == [*(f"cat/{n}.png" for n in range(5)), "bird/9.png"]
    assert table.column("labels").to_pylist()[0] == ["cat", "dog"]
    assert table.column("split").to_pylist()[:2] == [None, "test"]
    assert table.column("dhash").to_pylist()[9 - 4] == 2**64 - 1 - 9
    assert ScanFiles([]).table().num_rows == 0


def test_files_are_read_a_column_at_a_time_and_numbered(tmp_path: Path) -> None:
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    for index, path in enumerate(paths):
        with closing(ScanTable(path)) as table:
            for number in range(index + 2):
                table.append(f"{index}/{number}.png", ("cat",), None, _facts(10 * index + number))
    files = ScanFiles(paths, numbered="slice")
    assert files.num_rows == 5
    assert files.column_names[-1] == "slice"
    assert files.column("slice").to_pylist() == [0, 0, 1, 1, 1]
    assert files.column("size").to_pylist() == [100, 101, 110, 111, 112]
