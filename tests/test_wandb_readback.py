"""The offline W&B runs of a real sweep, read back with wandb's own reader of the .wandb log
(`wandb leet inspect`): run metadata, per-iteration history, summary and the rationale table."""

import json
from pathlib import Path

import pytest

from conftest import TINY_SWEEP_SAMPLERS
from emreason.metrics_file import read_metrics
from emreason.tracking import RATIONALE_COLUMNS
from fakes import leet_inspect, offline_run, records

pytestmark = pytest.mark.slow


def summary(run_dir: Path) -> dict:
    """The run's state, config and latest metric values."""
    return json.loads(leet_inspect(run_dir, "--summary"))


def test_offline_runs_hold_run_metadata_and_history(tiny_multirun):
    sweep_dir, _ = tiny_multirun
    for job, sampler in enumerate(TINY_SWEEP_SAMPLERS):
        job_dir = sweep_dir / str(job)
        log = records(offline_run(job_dir))

        run = next(record["run"] for record in log if record["type"] == "run")
        assert run["job_type"] == sampler
        assert run["run_group"].endswith(f"-{sweep_dir.name}")
        assert f"sampler:{sampler}" in run["tags"]
        assert run["config"]["update"]["sampler"]["name"] == sampler

        # One history row per logged step (step = EM iteration), as in metrics.jsonl.
        history = {record["history"]["step"].get("num", 0): record["history"]["item"] for record in log if record["type"] == "history"}
        metrics = read_metrics(job_dir)
        assert sorted(history) == [row["iteration"] for row in metrics]
        for row in metrics:
            logged = history[row["iteration"]]
            assert logged["iteration"] == row["iteration"]
            assert logged["test_accuracy"] == pytest.approx(row["test_accuracy"])
            if row["iteration"] > 0:
                assert logged["acceptance_rate"] == pytest.approx(row["acceptance_rate"])
        (exit_record,) = [record["exit"] for record in log if record["type"] == "exit"]
        assert exit_record.get("exit_code", 0) == 0


def test_offline_runs_hold_the_rationale_table(tiny_multirun):
    sweep_dir, _ = tiny_multirun
    for job, sampler in enumerate(TINY_SWEEP_SAMPLERS):
        job_dir = sweep_dir / str(job)
        run_dir = offline_run(job_dir)
        state = summary(run_dir)
        assert state["state"] == "finished"
        final = read_metrics(job_dir)[-1]
        assert state["summary"]["test_accuracy"] == pytest.approx(final["test_accuracy"])

        table_ref = state["summary"]["rationales"]
        assert table_ref["_type"] == "table-file"
        table_path = run_dir / "files" / table_ref["path"]
        assert table_path in list((run_dir / "files" / "media" / "table").glob("rationales_*.table.json"))
        table = json.loads(table_path.read_text())
        assert table["columns"] == RATIONALE_COLUMNS
        assert len(table["data"]) == table_ref["nrows"] > 0
        rows = [dict(zip(table["columns"], row)) for row in table["data"]]
        assert {row["iteration"] for row in rows} == {1}
        assert all(row["rationale"] is not None and isinstance(row["correct"], bool) for row in rows)
        if sampler == "pps":  # PPS samples only from the hinted prompt
            assert all(row["hinted"] is True for row in rows)
        if sampler == "rs":  # RS never sees the answer
            assert not any(row["hinted"] for row in rows)
