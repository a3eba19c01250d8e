"""The training memory budget: the setting, else half the process's limit; and which splits the cache takes."""

from __future__ import annotations

from pathlib import Path

from autovision.settings import Settings
from autovision.train.memory import (
    cache_bytes,
    fits_cache,
    memory_limit,
    process_memory_limit,
    training_memory_budget,
)

GIB = 1024**3


def test_the_limit_is_the_smallest_set_of_the_cgroup_s_and_the_machine_s() -> None:
    assert memory_limit(None, None, 16 * GIB) == 16 * GIB
    assert memory_limit("max\n", None, 16 * GIB) == 16 * GIB, "cgroup v2 without a limit"
    assert memory_limit("4294967296\n", None, 16 * GIB) == 4 * GIB
    assert memory_limit(None, "9223372036854771712\n", 16 * GIB) == 16 * GIB, "cgroup v1's unlimited"
    assert memory_limit(None, "2147483648\n", 16 * GIB) == 2 * GIB
    assert memory_limit("3221225472", "2147483648", 16 * GIB) == 2 * GIB


def test_a_cgroup_v1_limit_is_read(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("123456789\n")
    assert process_memory_limit(tmp_path) == 123456789


def test_the_budget_is_the_setting_else_half_the_process_s_limit() -> None:
    assert training_memory_budget(Settings(training_memory_bytes=5 * GIB)) == 5 * GIB
    assert training_memory_budget(Settings()) == process_memory_limit() // 2


def test_a_split_fits_while_its_uint8_pixels_fit() -> None:
    assert cache_bytes(1000, 224) == 1000 * 3 * 224 * 224
    assert fits_cache(1000, 224, cache_bytes(1000, 224))
    assert not fits_cache(1001, 224, cache_bytes(1000, 224))
    assert not fits_cache(1_000_000, 224, 16 * GIB), "a million photos at 224 px stream on a 32 GiB machine"
