"""The shim's malloc tuning: answer-sized blocks go back to the system once freed.

glibc raises its mmap threshold each time it frees a mapped block, so after
one answer of a megabyte, blocks of a few hundred KiB came from the heap and
stayed resident once freed. Each case runs in a fresh interpreter: what is
measured is the process's resident size around real ``malloc``/``free``
calls, with and without :func:`worker.batch.service.tune_malloc`.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc only"),
]

#: Prints how many KiB of 48 freed blocks of 300 KiB stay resident. Each
#: block has a 100 KiB block still in use after it, so freed ones cannot
#: merge into the top of the heap and be trimmed. Both modes import the
#: shim's modules, whose imports leave the heap as the shim has it.
PROBE = """
import ctypes, os, sys
from worker.batch.service import tune_malloc
if sys.argv[1] == "tuned":
    tune_malloc()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
page = os.sysconf("SC_PAGE_SIZE")

def resident_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page // 1024

def touched(kib):
    block = libc.malloc(kib * 1024)
    ctypes.memset(block, 1, kib * 1024)
    return block

libc.free(touched(1024))  # one answer of a megabyte, freed
before = resident_kib()
freed, kept = [], []
for _ in range(48):
    freed.append(touched(300))
    kept.append(touched(100))
for block in freed:
    libc.free(block)
print(resident_kib() - before - 100 * len(kept))
"""


def resident_after_free_kib(mode: str) -> int:
    # glibc reads its own tunables from the environment: none may decide for it.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          timeout=30, check=True, env=env)
    return int(done.stdout)


def test_freed_answer_sized_blocks_are_given_back() -> None:
    assert resident_after_free_kib("tuned") < 2 * 1024


def test_without_the_tuning_they_stay_resident() -> None:
    # What the tuning is for: glibc's own behaviour, which the test above
    # would not notice changing without this one.
    assert resident_after_free_kib("default") > 10 * 1024
