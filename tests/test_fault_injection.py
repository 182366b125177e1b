"""SIGKILL a real tiny job in its E-step, M-step and checkpoint write, resume it after each
kill, and end with exactly the metrics of an uninterrupted run (benchmarks/fault_injection.py
is the harness; `make faults` runs its long version)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def kill_and_resume(out, *options: str) -> dict:
    """The harness's summary after its kills; fails the test if the harness failed."""
    harness = [sys.executable, "-m", "benchmarks.fault_injection", "--out", str(out), *options]
    result = subprocess.run(harness, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["failed_runs"] == [], summary
    assert summary["episodes_with_lost_or_doubled_iterations"] == 0, result.stdout
    assert summary["episodes_differing_from_uninterrupted"] == 0, result.stdout
    assert summary["orphans_killed"] == 0, result.stdout
    return summary


def test_kills_at_random_points_lose_or_double_no_iteration_and_change_no_result(tmp_path):
    phases = ["E-step", "M-step", "checkpoint"]
    summary = kill_and_resume(tmp_path, "--kills", "3", "--iterations", "1", "--phases", *phases)
    # The kills are aimed by the phases' lengths measured on this machine: each lands in its phase.
    assert set(phases) <= summary["kills_by_phase"].keys(), summary


def test_a_job_with_two_trainer_processes_killed_in_each_m_step_resumes_to_the_same_metrics(tmp_path):
    # Iteration 2's kill resumes from the checkpoint the processes wrote after iteration 1.
    summary = kill_and_resume(
        tmp_path, "--kills", "2", "--iterations", "2", "--phases", "M-step", "--", "optimizer.processes=2"
    )
    assert "M-step" in summary["kills_by_phase"], summary
