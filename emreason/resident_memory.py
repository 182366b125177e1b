"""The job process's peak resident memory within a stretch of work (an EM iteration), read from
Linux's VmHWM after resetting it through /proc/self/clear_refs. On a CPU the vLLM engine runs in
the job's process (generator.engine_in_process) and so does the trainer (optimizer.processes=1),
so this is the job's memory; under the kernel's limit or not is decided by it."""

import ctypes
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
# Writing this to clear_refs resets the peak resident set size (VmHWM) to the current one.
RESET_PEAK = "5"


def reset_peak() -> None:
    """Start a new peak from the current resident set; nothing where /proc does not offer it."""
    try:
        CLEAR_REFS.write_text(RESET_PEAK)
    except OSError:
        pass


def peak_gib() -> float | None:
    """The peak resident set since the last reset_peak (or the process start), in GiB (2^30
    bytes); None where /proc/self/status has no VmHWM (not Linux)."""
    try:
        lines = STATUS.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # the value is in kB
    return None


def release_freed() -> None:
    """Hand the memory freed since the last call back to the system (glibc's malloc_trim; nothing
    where the C library has none). glibc keeps freed blocks for reuse: after an M-step and a
    weight sync it held about 8 GiB of them on the default job, and every later iteration added
    more (docs/performance.md)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
