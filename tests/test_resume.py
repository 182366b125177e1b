"""A job stopped after an iteration and resumed ends exactly like one that ran through."""

import json

import pytest
import yaml

from conftest import run_emreason
from emreason.metrics_file import read_metrics, without_timings

pytestmark = pytest.mark.slow

TINY = ["experiment=tiny", "sampler=pps", "logger.mode=disabled"]


def test_resume_dir_continues_with_the_saved_config_and_matches_an_uninterrupted_run(tmp_path):
    through, stopped = tmp_path / "through", tmp_path / "stopped"
    uninterrupted = run_emreason(*TINY, "em.iterations=2", f"hydra.run.dir={through}")
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-4000:]
    first = run_emreason(*TINY, "em.iterations=1", f"hydra.run.dir={stopped}")
    assert first.returncode == 0, first.stderr[-4000:]

    # Only the new iteration count is given: the sampler and the rest come from the checkpoint.
    resumed = run_emreason(f"resume={stopped}", "em.iterations=2")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "Resuming after EM iteration 1" in resumed.stderr + resumed.stdout

    rows = read_metrics(stopped)
    assert [row["iteration"] for row in rows] == [0, 1, 2]
    assert without_timings(rows) == without_timings(read_metrics(through))
    saved = stopped / "checkpoint"
    assert json.loads((saved / "overrides.json").read_text()) == [*TINY, "em.iterations=2"]
    config = yaml.safe_load((saved / "config.yaml").read_text())
    assert config["em"]["iterations"] == 2 and config["sampler"]["name"] == "pps"
    assert (saved / "metrics.jsonl").read_text() == (stopped / "metrics.jsonl").read_text()


def test_resume_of_a_folder_without_a_checkpoint_is_an_error_that_creates_nothing(tmp_path):
    missing = tmp_path / "never-ran"
    result = run_emreason(f"resume={missing}")
    assert result.returncode != 0
    assert f"resume={missing}: no complete checkpoint" in result.stderr
    assert not missing.exists()
