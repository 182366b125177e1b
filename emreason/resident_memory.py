"""The job process's memory: its peak within a stretch of work (an EM iteration), read from
Linux's VmHWM after resetting it through /proc/self/clear_refs, its resident set now, and the
settings of the C library, of oneDNN's cache and of PyTorch's ideep cache that keep it from
growing over a job. On a CPU the vLLM engine runs in the job's process
(generator.engine_in_process) and so does the trainer (optimizer.processes=1), so this is the
job's memory; under the kernel's limit or not is decided by it."""

import ctypes
import os
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
# Writing this to clear_refs resets the peak resident set size (VmHWM) to the current one.
RESET_PEAK = "5"
# mallopt's parameter number for the mmap threshold (glibc's malloc.h), and the threshold we set.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 * 2**20
# The environment variables for how many compiled kernels oneDNN keeps, and how many entries
# PyTorch's ideep layer (between torch and oneDNN) keeps in its own cache; the number we keep.
ONEDNN_CACHE_CAPACITY = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
IDEEP_CACHE_CAPACITY = "LRU_CACHE_CAPACITY"
KERNELS_KEPT = 128


def reset_peak() -> None:
    """Start a new peak from the current resident set; nothing where /proc does not offer it."""
    try:
        CLEAR_REFS.write_text(RESET_PEAK)
    except OSError:
        pass


def peak_gib() -> float | None:
    """The peak resident set since the last reset_peak (or the process start), in GiB (2^30
    bytes); None where /proc/self/status has no VmHWM (not Linux)."""
    return _status_gib("VmHWM")


def current_gib() -> float | None:
    """The resident set now, in GiB; None where /proc/self/status has no VmRSS (not Linux)."""
    return _status_gib("VmRSS")


def _status_gib(field: str) -> float | None:
    try:
        lines = STATUS.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 2**20  # the value is in kB
    return None


def return_large_blocks() -> bool:
    """Have glibc give every block of 4 MiB or more its own mapping, handed back to the system when
    it is freed; False where the C library has no mallopt. By default glibc raises that threshold
    (up to 32 MiB) whenever such a block is freed, after which activations and logits come from its
    heap and fragment it. Fixed, the default job's iteration peaks fell from 7.19 / 8.25 / 8.81 to
    6.67 / 7.21 / 7.65 GiB at the same speed (docs/performance.md, "M-step memory")."""
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


def release_freed() -> None:
    """Hand the memory freed since the last call back to the system (glibc's malloc_trim; nothing
    where the C library has none). glibc keeps freed blocks for reuse: after an M-step and a
    weight sync it held about 8 GiB of them on the default job, and every later iteration added
    more (docs/performance.md)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def keep_fewer_kernels() -> None:
    """Have oneDNN (behind torch's bf16 matrix products on a CPU, and vLLM's CPU linear layers,
    which bundle their own copy) keep its 128 most recently used compiled kernels instead of
    1,024, and PyTorch's ideep layer keep 128 entries in its own cache instead of 1,024, unless
    ONEDNN_PRIMITIVE_CACHE_CAPACITY or LRU_CACHE_CAPACITY is set already; processes the job
    starts inherit them. Both caches gain entries for every new matrix shape (ideep's about
    200-250 KiB each, however small the matrices), and every M-step micro-batch has a new
    sequence length, so they grew over the first iterations of every job until full
    (pytorch/pytorch#27971). Both are read when the first kernel is compiled: call this before
    any bf16 product. docs/performance.md, "M-step memory", has the measurements: oneDNN's cap
    took the default job's iteration peaks from 6.70 / 7.20 / 7.64 to 6.08 / 6.40 / 6.61 GiB;
    ideep's took the memory it holds from one iteration to the next from +0.16 / +0.06 to
    +0.02 / +0.01 GiB an iteration. Completions were the same, and times within 2%."""
    os.environ.setdefault(ONEDNN_CACHE_CAPACITY, str(KERNELS_KEPT))
    os.environ.setdefault(IDEEP_CACHE_CAPACITY, str(KERNELS_KEPT))
