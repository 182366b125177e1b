"""A killed sweep continues with one command and ends like an uninterrupted one; its W&B data
holds exactly metrics.jsonl's rows; `-m resume=DIR` stops at once saying what to run."""

import hashlib
import json
import os
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import EMREASON, REPO, TINY_SWEEP_SAMPLERS, run_emreason
from emreason.metrics_file import read_metrics, without_timings
from fakes import offline_run, records, write_checkpoint

SWEEP = ["experiment=tiny", f"sampler={','.join(TINY_SWEEP_SAMPLERS)}", "logger.mode=offline"]
# Logged by a job after its iteration's metrics row and before its checkpoint.
AFTER_THE_ROW = "EM iteration 1: checkpoint"


def kill_in_second_job_before_its_checkpoint(command: list[str], log: Path) -> None:
    """Run the sweep; SIGKILL its whole process group when job 1 has logged its iteration-1
    row and is writing the checkpoint (seconds of optimizer state on the CPU)."""
    with log.open("w") as output:
        sweep = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True, env={**os.environ, "HYDRA_FULL_ERROR": "1"},
        )
        in_second_job = False
        for line in sweep.stdout:
            output.write(line)
            in_second_job = in_second_job or line.startswith("[") and "#1 :" in line
            if in_second_job and AFTER_THE_ROW in line:
                os.killpg(sweep.pid, signal.SIGKILL)
                break
        sweep.wait()
    assert sweep.returncode == -signal.SIGKILL, f"the sweep ended before the kill; see {log}"


def history(job_dir: Path) -> dict[int, dict]:
    """What `wandb sync` would upload from the job's one offline run: history row per step."""
    return {r["history"]["step"].get("num", 0): r["history"]["item"] for r in records(offline_run(job_dir)) if r["type"] == "history"}


def fingerprint(job_dir: Path) -> dict[str, str]:
    """Every file of a job directory but Hydra's and the job log, with its content hash and mtime."""
    return {
        str(path.relative_to(job_dir)): f"{hashlib.sha1(path.read_bytes()).hexdigest()} {path.stat().st_mtime_ns}"
        for path in sorted(job_dir.rglob("*"))
        if path.is_file() and ".hydra" not in path.parts and path.name != "cli.log"
    }


@pytest.mark.slow
def test_a_sweep_killed_in_its_second_job_continues_with_one_command_and_ends_like_an_uninterrupted_one(tiny_multirun, tmp_path):
    reference, _ = tiny_multirun
    sweep = tmp_path / "sweep"
    kill_in_second_job_before_its_checkpoint([EMREASON, "-m", *SWEEP, f"hydra.sweep.dir={sweep}"], tmp_path / "killed.log")
    # Job 1 was killed after logging iteration 1 and before checkpointing it; job 2 never started.
    assert [row["iteration"] for row in read_metrics(sweep / "1")] == [0, 1]
    assert json.loads((sweep / "1" / "checkpoint" / "state.json").read_text())["iteration"] == 0
    assert not (sweep / "2").exists()
    finished_job = fingerprint(sweep / "0")

    # `-m resume=` stops at once, before creating anything, with the command that continues the sweep
    # (Hydra keeps a sweep's own config in multirun.yaml; each job's in its .hydra).
    asked = run_emreason("-m", f"resume={sweep / '1'}", timeout=300)
    assert asked.returncode != 0
    assert sorted(path.name for path in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    lines = asked.stderr.splitlines()
    command = shlex.split(lines[lines.index(next(line for line in lines if "To continue the sweep" in line)) + 1])
    assert command == ["emreason", "-m", *SWEEP, f"hydra.sweep.dir={sweep}"]
    assert f"emreason resume={sweep / '1'}" in asked.stderr  # or that one run alone

    rerun = run_emreason(*command[1:])
    assert rerun.returncode == 0, rerun.stderr[-4000:]

    assert fingerprint(sweep / "0") == finished_job  # not rerun: no file rewritten, W&B run untouched
    assert "nothing to run" in (sweep / "0" / "cli.log").read_text()
    assert "Resuming after EM iteration 0" in (sweep / "1" / "cli.log").read_text()
    for job in range(len(TINY_SWEEP_SAMPLERS)):
        rows = read_metrics(sweep / str(job))
        assert without_timings(rows) == without_timings(read_metrics(reference / str(job)))
        # Exactly one W&B run per job directory (what `wandb sync <sweep>/*/wandb/offline-run-*`
        # uploads), one history row per iteration, equal to metrics.jsonl, timings included.
        logged = history(sweep / str(job))
        assert sorted(logged) == [row["iteration"] for row in rows]
        for row in rows:
            assert {key: logged[row["iteration"]][key] for key in row} == pytest.approx(row)
        assert logged[1]["rationales.nrows"] == len(
            [line for line in (sweep / str(job) / "rationales.jsonl").read_text().splitlines() if line]
        )


@pytest.mark.parametrize("sweep_dir_given", [False, True])
def test_resume_under_multirun_stops_before_any_job_runs(tmp_path, sweep_dir_given):
    """Without hydra.sweep.dir nothing is created; with it, Hydra has made the sweep folder
    before emreason is asked, and the first job stops before anything loads."""
    sweep = tmp_path / "sweep"
    given = [f"hydra.sweep.dir={sweep}"] if sweep_dir_given else []
    result = run_emreason("-m", f"resume={tmp_path / 'never-ran'}", "sampler=rs,pps", *given, timeout=300)
    assert result.returncode != 0
    assert f"resume={tmp_path / 'never-ran'} cannot be used with -m" in result.stderr
    assert "neither a sweep directory (no multirun.yaml) nor a run directory" in result.stderr
    assert not list(sweep.rglob("metrics.jsonl")) and not list(sweep.rglob("wandb"))
    assert sweep.exists() == sweep_dir_given


def test_a_rerun_sweep_with_other_jobs_in_a_folder_stops_instead_of_resuming_their_checkpoints(tmp_path):
    from emreason import checkpoint, cli

    write_checkpoint(tmp_path, 1, overrides=("experiment=tiny", "sampler=rs", "seed=1", "logger.mode=offline"))
    found = checkpoint.latest(tmp_path)
    # The same job, extended and logged differently: it continues.
    cli.check_same_job(tmp_path, found, ["experiment=tiny", "sampler=rs", "seed=1", "em.iterations=4", "logger.mode=disabled"])
    # The overrides in another order number the jobs differently.
    with pytest.raises(SystemExit, match="holds the checkpoint of the job `experiment=tiny sampler=rs seed=1"):
        cli.check_same_job(tmp_path, found, ["experiment=tiny", "sampler=pps", "seed=0", "logger.mode=offline"])


def test_a_restarted_job_rebuilds_its_offline_wandb_run_from_the_run_directory(tmp_path):
    """What an earlier attempt left in W&B (here a run holding a row of iteration 2, which the
    checkpoint had not reached) is replaced by one run holding exactly the restored rows."""
    from emreason.tracking import RATIONALE_COLUMNS, LoggerConfig, Tracker

    rows = [{"iteration": 0, "test_accuracy": 0.25}, {"iteration": 1, "test_accuracy": 0.5, "acceptance_rate": 0.3, "e_step_s": 1.5}]
    rationale = dict(zip(RATIONALE_COLUMNS, [1, "q1", "Why?", "A", "Because. Answer: A", "A", True, False]))
    first = Tracker(tmp_path, LoggerConfig(), {"seed": 0}, tags=[], job_type="pps")
    for row in rows:
        first.log_iteration(row)
    first.log_iteration({"iteration": 2, "test_accuracy": 0.99})
    first.close()
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))  # the checkpoint's rows
    (tmp_path / "rationales.jsonl").write_text(json.dumps(rationale) + "\n")

    Tracker(tmp_path, LoggerConfig(), {"seed": 0}, tags=[], job_type="pps").close()
    logged = history(tmp_path)
    assert sorted(logged) == [0, 1]
    for row in rows:
        assert {key: logged[row["iteration"]][key] for key in row} == pytest.approx(row)
    assert logged[1]["rationales.nrows"] == 1  # W&B's history flattens the table's reference
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    table = json.loads((run / "files" / logged[1]["rationales.path"]).read_text())
    assert table["data"] == [[rationale[column] for column in RATIONALE_COLUMNS]]
