"""The job's memory figures (the resident set now and its peak since a reset, from /proc) and the
settings that keep it from growing (glibc's mmap threshold, oneDNN's kernel cache, ideep's cache)."""

import ctypes
import os
import re
import subprocess
import sys

import pytest

from emreason import resident_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


def test_the_peak_since_a_reset_sees_memory_that_was_freed_again():
    resident_memory.release_freed()
    resident_memory.reset_peak()
    before = resident_memory.current_gib()
    block = bytearray(256 * 2**20)  # zero-filled: every page is touched
    during = resident_memory.current_gib()
    del block
    resident_memory.release_freed()
    after = resident_memory.current_gib()
    assert during - before >= 0.2
    # The kernel folds its per-thread counters into the peak now and then: a few pages may be missing.
    assert resident_memory.peak_gib() - before >= 0.2
    assert during - after >= 0.2


def test_glibc_takes_the_fixed_mmap_threshold():
    assert resident_memory.return_large_blocks()


# A bf16 product of shape A, then of 200 other shapes, then of A again; prints how oneDNN got
# A's kernel the second time (compiled again: a miss; kept: a hit), from its verbose log.
KERNEL_CACHE = """
import torch
from emreason import resident_memory
resident_memory.keep_fewer_kernels()
weight = torch.ones(16, 16, dtype=torch.bfloat16)
product = lambda rows: torch.nn.functional.linear(torch.ones(rows, 16, dtype=torch.bfloat16), weight)
product(1000)
for rows in range(1, 201):
    product(rows)
print("AGAIN", flush=True)
product(1000)
"""


def environment(variable: str, user_value: str | None) -> dict[str, str]:
    """This process's environment with `variable` set to the user's value, or unset."""
    env = {k: v for k, v in os.environ.items() if k != variable}
    return env if user_value is None else {**env, variable: user_value}


def kernel_for_shape_a_the_second_time(user_capacity: str | None) -> str | None:
    env = environment(resident_memory.ONEDNN_CACHE_CAPACITY, user_capacity)
    result = subprocess.run(
        [sys.executable, "-c", KERNEL_CACHE], env={**env, "ONEDNN_VERBOSE": "profile_create"},
        capture_output=True, text=True, check=True,
    )
    after = result.stdout.split("AGAIN", 1)[1]
    creation = re.search(r"onednn_verbose,.*primitive,create:(cache_\w+),cpu,matmul,", after)
    return creation.group(1) if creation else None


@pytest.mark.parametrize("user_capacity, second_time", [(None, "cache_miss"), ("1024", "cache_hit")])
def test_onednn_keeps_the_last_128_kernels_unless_the_user_said_otherwise(user_capacity, second_time):
    found = kernel_for_shape_a_the_second_time(user_capacity)
    if found is None:
        pytest.skip("this CPU's bf16 products do not go through oneDNN")
    assert found == second_time


# bf16 products (forward and backward) of 400 shapes; prints the MiB the C library handed out
# for them and still holds (in use in its heap, and mapped blocks), which ideep's cache dominates.
IDEEP_CACHE = """
import ctypes
import torch
from emreason import resident_memory
resident_memory.keep_fewer_kernels()

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
weight = torch.ones(64, 64, requires_grad=True)

def product(rows):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.nn.functional.linear(torch.ones(rows, 64), weight).float().sum().backward()

def held():
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd

product(8)
before = held()
for rows in range(9, 409):
    product(rows)
print((held() - before) / 2**20)
"""


def mib_added_by_400_shapes(user_capacity: str | None) -> float:
    env = environment(resident_memory.IDEEP_CACHE_CAPACITY, user_capacity)
    result = subprocess.run([sys.executable, "-c", IDEEP_CACHE], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return float(result.stdout.split()[-1])


def test_ideeps_cache_keeps_128_entries_unless_the_user_said_otherwise():
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("the C library has no mallinfo2 (glibc before 2.33)")
    users = mib_added_by_400_shapes("1024")
    if users < 64:
        pytest.skip(f"400 bf16 shapes added {users:.0f} MiB with ideep's default cache: not through ideep here")
    ours = mib_added_by_400_shapes(None)
    # 1,024 entries against 128: about 250 against 75 MiB on a CPU with AMX.
    assert ours < users / 2
