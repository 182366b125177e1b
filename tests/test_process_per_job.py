"""hydra/launcher=process_per_job (hydra_plugins/emreason_launcher): a multirun's jobs run one at
a time, each in a fresh process, on a small Hydra app of its own (no model, seconds)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A job records what it saw of the jobs before it: module state lives as long as its process.
APP = """
import os, signal, sys, time
from pathlib import Path
import hydra
from hydra.core.hydra_config import HydraConfig

JOBS_IN_THIS_PROCESS = []


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    JOBS_IN_THIS_PROCESS.append(cfg.x)
    os.chdir(HydraConfig.get().runtime.output_dir)
    Path("seen").write_text(f"{os.getpid()} {JOBS_IN_THIS_PROCESS}")
    if cfg.x == cfg.get("fail"):
        raise RuntimeError(f"job {cfg.x} failed on purpose")
    if cfg.x == cfg.get("exit"):
        sys.exit(f"job {cfg.x} stops the sweep on purpose")
    if cfg.x == cfg.get("wait"):
        signal.signal(signal.SIGTERM, lambda *_: (Path("stopped").write_text("SIGTERM"), sys.exit(143)))
        Path("started").write_text("")
        time.sleep(120)
    return cfg.x


if __name__ == "__main__":
    main()
"""


def sweep(tmp_path: Path, launcher: str, *overrides: str) -> subprocess.Popen:
    (tmp_path / "app.py").write_text(APP)
    command = [sys.executable, "app.py", "-m", f"hydra/launcher={launcher}", "+x=1,2,3", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def seen(tmp_path: Path) -> list[tuple[int, str]]:
    """(process id, jobs that process had run) for each job folder, in job order."""
    records = [(tmp_path / "sweep" / str(job) / "seen").read_text().split(" ", 1) for job in range(3)]
    return [(int(pid), jobs) for pid, jobs in records]


@pytest.mark.parametrize(
    "launcher, expected",
    [
        # The basic launcher is the contrast: its jobs share a process, and each sees the earlier ones.
        ("basic", ["[1]", "[1, 2]", "[1, 2, 3]"]),
        ("process_per_job", ["[1]", "[2]", "[3]"]),
    ],
)
def test_each_job_runs_in_a_process_of_its_own(tmp_path, launcher, expected):
    process = sweep(tmp_path, launcher)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    records = seen(tmp_path)
    assert [jobs for _, jobs in records] == expected
    pids = {pid for pid, _ in records}
    assert pids == ({process.pid} if launcher == "basic" else pids - {process.pid})
    assert len(pids) == (1 if launcher == "basic" else 3)


def test_a_failed_job_fails_the_sweep_after_the_others_ran(tmp_path):
    process = sweep(tmp_path, "process_per_job", "+fail=2")
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "job 2 failed on purpose" in output
    assert [jobs for _, jobs in seen(tmp_path)] == ["[1]", "[2]", "[3]"]


def test_a_job_that_exits_stops_the_sweep(tmp_path):
    process = sweep(tmp_path, "process_per_job", "+exit=2")
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "job 2 stops the sweep on purpose" in output and "Job #1 ended without a result" in output
    assert not (tmp_path / "sweep" / "2").exists()


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (an ended child nobody has reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_job_stops_when_the_sweep_process_is_killed(tmp_path):
    process = sweep(tmp_path, "process_per_job", "+wait=2")
    started = tmp_path / "sweep" / "1" / "started"
    deadline = time.monotonic() + 120
    while not started.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stopped = tmp_path / "sweep" / "1" / "stopped"
    deadline = time.monotonic() + 30
    while not stopped.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stopped.read_text() == "SIGTERM"
    job_pid = int((tmp_path / "sweep" / "1" / "seen").read_text().split()[0])
    deadline = time.monotonic() + 30
    while running(job_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(job_pid), "the job's process outlived it"
    assert not (tmp_path / "sweep" / "2").exists()
