"""SIGKILL a real tiny job in its E-step, M-step and checkpoint write, resume it after each
kill, and end with exactly the metrics of an uninterrupted run (benchmarks/fault_injection.py
is the harness; `make faults` runs its long version)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_kills_at_random_points_lose_or_double_no_iteration_and_change_no_result(tmp_path):
    harness = [sys.executable, "-m", "benchmarks.fault_injection", "--out", str(tmp_path)]
    options = ["--kills", "3", "--iterations", "1", "--phases", "E-step", "M-step", "checkpoint"]
    result = subprocess.run([*harness, *options], cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.splitlines()[-1])

    assert summary["kills"] == 3 and summary["episodes"] == 1, summary
    assert summary["failed_runs"] == [], summary
    assert summary["episodes_with_lost_or_doubled_iterations"] == 0, result.stdout
    assert summary["episodes_differing_from_uninterrupted"] == 0, result.stdout
