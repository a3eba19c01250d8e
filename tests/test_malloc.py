"""Freed batch-sized buffers go back to the system at once: glibc's fixed mmap threshold, Arrow through glibc."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from autovision.malloc import release_large_buffers

# A child that frees one 4 MiB block (raising glibc's dynamic threshold past a 1 MiB block), then allocates and
# frees 1 MiB blocks under a long-lived small one each time (the pattern that fragments the heap), and prints
# how much its heap grew, in KiB.
CHILD = """
import ctypes, ctypes.util, sys
from autovision.malloc import release_large_buffers
if sys.argv[1] == "fixed":
    release_large_buffers()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.sbrk.restype = ctypes.c_void_p
libc.free(libc.malloc(4 << 20))
start = libc.sbrk(0)
kept = []
for _ in range(64):
    block = libc.malloc(1 << 20)
    kept.append(libc.malloc(64))
    libc.free(block)
print((libc.sbrk(0) - start) // 1024)
"""


def heap_growth_kib(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the threshold is glibc's")
def test_a_fixed_threshold_keeps_batch_sized_buffers_off_the_heap() -> None:
    assert release_large_buffers()
    assert heap_growth_kib("fixed") < 512
    # The test can fail: with glibc's dynamic threshold the same blocks come from the heap.
    assert heap_growth_kib("default") >= 1024


def arrow_allocator(environment: dict[str, str]) -> str:
    code = "import autovision, pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment)
    return done.stdout.strip()


def test_arrow_buffers_go_through_glibc_unless_the_user_chose_otherwise() -> None:
    environment = {key: value for key, value in os.environ.items() if key != "ARROW_DEFAULT_MEMORY_POOL"}
    assert arrow_allocator(environment) == "system"
    assert arrow_allocator({**environment, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == "mimalloc"
