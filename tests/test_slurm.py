"""SLURM launcher end to end, on a single-node SLURM cluster on this machine.

The slow test starts the cluster with launchers/local_slurm.sh (which installs
Debian's slurm and munge when missing: root and apt-get needed), submits a
2-job multirun through hydra/launcher=slurm, checks both jobs' metrics and
that they ran as tasks of one SLURM job array, and stops the cluster again,
also when something fails (set EMREASON_SLURM_KEEP=1 to leave it running).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL_SLURM = REPO / "launchers" / "local_slurm.sh"
EMREASON = Path(sys.executable).parent / "emreason"
PARTITION = "local"  # the partition local_slurm.sh creates, and slurm.yaml's default
MULTIRUN_TIMEOUT_S = 30 * 60


def _slurm_env() -> dict[str, str]:
    env = dict(os.environ)
    env["EMREASON_SLURM_PARTITION"] = PARTITION
    return env


def _run_script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(LOCAL_SLURM), *args],
        cwd=REPO,
        env=_slurm_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _daemons_running() -> list[str]:
    if not shutil.which("pgrep"):
        return []
    return [
        name
        for name in ("slurmctld", "slurmd", "munged")
        if subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0
    ]


@pytest.fixture
def local_slurm(request):
    """A running single-node SLURM cluster, stopped again at teardown."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("local SLURM cluster needs root (installs packages, starts daemons)")
    if shutil.which("apt-get") is None:
        pytest.skip("local SLURM cluster needs apt-get (Debian/Ubuntu) to install slurm and munge")

    def stop() -> None:
        if os.environ.get("EMREASON_SLURM_KEEP") == "1":
            return
        res = _run_script("stop", timeout=300)
        assert res.returncode == 0, f"local_slurm.sh stop failed:\n{res.stdout}\n{res.stderr}"

    # Registered before starting, so a half-started cluster is stopped too.
    request.addfinalizer(stop)
    res = _run_script("start")
    assert res.returncode == 0, (
        f"local_slurm.sh start exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    )
    return res


def test_status_on_stopped_cluster_says_stopped():
    running = _daemons_running()
    if running:
        pytest.skip(f"a cluster is running here ({', '.join(running)}); status would not be 'stopped'")
    res = _run_script("status", timeout=60)
    assert res.returncode != 0
    assert "stopped" in res.stdout


def test_status_usage_error():
    res = _run_script("bogus", timeout=60)
    assert res.returncode == 2
    assert "usage" in res.stderr


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _squeue() -> str:
    try:
        return subprocess.run(["squeue"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"squeue failed: {exc}"


def _job_log_tails(sweep: Path) -> str:
    """The last lines of each SLURM task's submitit logs, for failure messages."""
    parts = []
    for log in sorted((sweep / ".submitit").glob("*/*_log.*")):
        lines = log.read_text(errors="replace").splitlines()
        parts.append(f"--- {log.relative_to(sweep)} ---\n" + "\n".join(lines[-15:])[-2000:])
    return "\n".join(parts)


def _read_metrics(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert rows, f"{path} is empty"
    return rows


@pytest.mark.slow
def test_multirun_on_local_slurm(local_slurm, tmp_path):
    assert EMREASON.exists(), f"no emreason script next to {sys.executable}"
    sweep = tmp_path / "multirun"
    cmd = [
        str(EMREASON),
        "-m",
        "experiment=tiny",
        "seed=0,1",
        "hydra/launcher=slurm",
        f"hydra.sweep.dir={sweep}",
        "logger.mode=disabled",
    ]
    try:
        res = subprocess.run(
            cmd,
            cwd=REPO,
            env=_slurm_env(),
            capture_output=True,
            text=True,
            timeout=MULTIRUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{' '.join(cmd)} still running after {MULTIRUN_TIMEOUT_S}s\n"
            f"squeue:\n{_squeue()}\n{_job_log_tails(sweep)}\n"
            f"stdout:\n{_text(exc.stdout)[-3000:]}\nstderr:\n{_text(exc.stderr)[-3000:]}"
        )
    out = (
        f"stdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}\n{_job_log_tails(sweep)}"
    )
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}\n{out}"

    # Both jobs: metrics with iterations 0..N (0 = baseline), accuracies in [0, 1].
    for num, seed in ((0, 0), (1, 1)):
        job_dir = sweep / str(num)
        overrides = (job_dir / ".hydra" / "overrides.yaml").read_text()
        assert f"seed={seed}" in overrides, overrides
        metrics = job_dir / "metrics.jsonl"
        assert metrics.is_file(), f"missing {metrics}\n{out}"
        rows = _read_metrics(metrics)
        iterations = [row["iteration"] for row in rows]
        assert iterations == list(range(len(rows))), f"{metrics}: iterations {iterations}"
        assert len(rows) >= 2, f"{metrics}: only the baseline row"
        for row in rows:
            acc = row["test_accuracy"]
            assert isinstance(acc, float) and math.isfinite(acc), f"{metrics}: {row}"
            assert 0.0 <= acc <= 1.0, f"{metrics}: {row}"

    # Both ran as tasks 0 and 1 of one SLURM job array: submitit keeps each
    # task's logs in .submitit/<array job id>_<task id>/.
    submitit_dir = sweep / ".submitit"
    task_dirs = sorted(
        p.name for p in submitit_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d+_\d+", p.name)
    )
    assert len(task_dirs) == 2, f"expected 2 array task dirs in {submitit_dir}: {task_dirs}"
    array_ids = {name.split("_")[0] for name in task_dirs}
    assert len(array_ids) == 1, f"tasks of different SLURM jobs: {task_dirs}"
    assert sorted(int(name.split("_")[1]) for name in task_dirs) == [0, 1]
    for name in task_dirs:
        log = (submitit_dir / name / f"{name}_0_log.out").read_text()
        assert f"JobEnvironment(job_id={name}," in log, log
        assert "Job completed successfully" in log, log
    (array_id,) = array_ids
    sbatch = (submitit_dir / array_id / f"{array_id}_submission.sh").read_text()
    assert "#SBATCH --array=0-1" in sbatch, sbatch
    assert f"#SBATCH --partition={PARTITION}" in sbatch, sbatch


def _wait_for(condition, timeout_s: float, what: str, sweep: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout_s}s\nsqueue:\n{_squeue()}\n{_job_log_tails(sweep)}")
        time.sleep(2)


@pytest.mark.slow
def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint(local_slurm, tmp_path):
    """SIGUSR2 (what SLURM sends before a time limit, and submitit's preemption signal) after
    the first checkpoint: submitit requeues the job, which resumes in the same directory and
    ends with each metrics row exactly once."""
    sweep = tmp_path / "multirun"
    job_dir = sweep / "0"
    cmd = [
        str(EMREASON), "-m", "experiment=tiny", "em.iterations=2", "seed=0",
        "hydra/launcher=slurm", f"hydra.sweep.dir={sweep}", "logger.mode=disabled",
    ]
    sweep_process = subprocess.Popen(
        cmd, cwd=REPO, env=_slurm_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for(lambda: (job_dir / "checkpoint" / "COMPLETE").exists(), 900, "first checkpoint", sweep)
        # submitit sends a one-job sweep as a plain job, not an array: its folder is the job id.
        (task,) = [p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+(_0)?", p.name)]
        signalled = subprocess.run(["scancel", "--signal=USR2", task], capture_output=True, text=True, timeout=60)
        assert signalled.returncode == 0, signalled.stderr
        output = sweep_process.communicate(timeout=MULTIRUN_TIMEOUT_S)[0]
    finally:
        if sweep_process.poll() is None:
            sweep_process.kill()
            subprocess.run(["scancel", "--name=emreason"], timeout=60)
    logs = f"{output[-3000:]}\n{_job_log_tails(sweep)}"
    assert sweep_process.returncode == 0, logs

    task_log = (sweep / ".submitit" / task / f"{task}_0_log.err").read_text()
    assert "Caught signal SIGUSR2" in task_log and "DUE TO JOB REQUEUE" in task_log, logs
    assert "Resuming after EM iteration" in (job_dir / "cli.log").read_text(), logs
    assert [row["iteration"] for row in _read_metrics(job_dir / "metrics.jsonl")] == [0, 1, 2], logs
