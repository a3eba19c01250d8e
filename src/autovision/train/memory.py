"""How much memory a trial's decoded training images may take, and whether a split fits it.

The budget is a setting (``Settings.training_memory_bytes``); unset, it is half
of what the process may use: its cgroup's limit (v2 ``memory.max``, v1
``memory.limit_in_bytes``) where one is set, else the machine's memory. A split
that fits is decoded once into the uint8 cache (``autovision.train.images``, the
fast path); a larger one is streamed (``autovision.train.streaming``).
"""

from __future__ import annotations

import os
from pathlib import Path

from autovision.settings import Settings

CGROUP_ROOT = Path("/sys/fs/cgroup")
# The share of the process's memory the cache may take by default: the rest is the model, the
# optimiser, the validation images and the decoding processes' working memory.
DEFAULT_SHARE = 2


def cache_bytes(images: int, size: int) -> int:
    """What ``images`` decoded at ``size`` px take in the cache: uint8 RGB, one byte a value."""
    return images * 3 * size * size


def fits_cache(images: int, size: int, budget_bytes: int) -> bool:
    """Whether a split of ``images`` at ``size`` px is decoded once into the cache (else it is streamed)."""
    return cache_bytes(images, size) <= budget_bytes


def memory_limit(cgroup_v2: str | None, cgroup_v1: str | None, machine_bytes: int) -> int:
    """The memory a process may use, from its cgroup files' contents (None where absent) and the machine's
    memory: the smallest limit set ("max" and v1's near-2**63 "unlimited" are no limit)."""
    limits = [machine_bytes]
    for text in (cgroup_v2, cgroup_v1):
        value = (text or "").strip()
        if value.isdigit():
            limits.append(int(value))
    return min(limits)


def process_memory_limit(root: Path = CGROUP_ROOT) -> int:
    """The memory this process may use: its cgroup's limit where one is set, else the machine's memory."""
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return memory_limit(
        _read(root / _own_cgroup() / "memory.max"), _read(root / "memory/memory.limit_in_bytes"), machine
    )


def training_memory_budget(settings: Settings) -> int:
    """The bytes a trial's decoded training images may take: the setting, else half the process's limit."""
    return settings.training_memory_bytes or process_memory_limit() // DEFAULT_SHARE


def _own_cgroup() -> str:
    """This process's cgroup v2 path ("0::/path" in /proc/self/cgroup), relative; "" where there is none."""
    for line in (_read(Path("/proc/self/cgroup")) or "").splitlines():
        if line.startswith("0::"):
            return line[3:].strip().lstrip("/")
    return ""


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
