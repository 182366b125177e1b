"""The job's memory figures: the resident set now and its peak since a reset, from /proc."""

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
