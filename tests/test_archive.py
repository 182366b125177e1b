"""A finished job's small results kept in the archive (em.archive) and restored from it: what a
study needs to continue on a fresh clone, redoing only the jobs not archived."""

import json

from emreason import archive, rationale_log
from emreason.metrics_file import read_metrics

JOB = ["experiment=study", "seed=1", "dataset=gsm8k", "arm=pps"]


def finished_run(run_dir, iterations=2):
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"iteration": i, "test_accuracy": i / 10}) + "\n" for i in range(iterations + 1)))
    (run_dir / rationale_log.FOLDER).mkdir()
    (run_dir / rationale_log.FOLDER / "000-evaluation.jsonl").write_text('{"correct": true}\n' * 500)
    (run_dir / "checkpoint").mkdir()
    (run_dir / "checkpoint" / "model.safetensors").write_bytes(b"weights")


def test_a_job_is_named_by_what_makes_it_that_job():
    assert archive.entry_name(JOB) == "arm=pps,dataset=gsm8k,experiment=study,seed=1"
    rerun = [*reversed(JOB), "em.iterations=3", "logger.group='emreason-study'", "hydra.sweep.dir=/tmp/x"]
    assert archive.entry_name(rerun) == archive.entry_name(JOB)
    assert archive.entry_name([*JOB[:-1], "arm=rs"]) != archive.entry_name(JOB)


def test_a_stored_job_is_restored_as_it_was_without_its_weights(tmp_path):
    finished_run(tmp_path / "run")
    entry = archive.store(tmp_path / "archive", JOB, tmp_path / "run")
    assert (entry / rationale_log.FOLDER / "000-evaluation.jsonl.gz").stat().st_size < 500 * 17 / 10
    assert not (entry / "checkpoint").exists()
    assert archive.finished(tmp_path / "archive", JOB, iterations=2)
    assert not archive.finished(tmp_path / "archive", JOB, iterations=3)  # extended: run it again
    assert not archive.finished(tmp_path / "archive", [*JOB[:-1], "arm=rs"], iterations=2)

    fresh = tmp_path / "fresh-clone-run"
    archive.restore(tmp_path / "archive", JOB, fresh)
    assert read_metrics(fresh) == read_metrics(tmp_path / "run")
    for name in ["rationales/000-evaluation.jsonl", ".hydra/config.yaml", ".hydra/overrides.yaml"]:
        assert (fresh / name).read_bytes() == (tmp_path / "run" / name).read_bytes()


def test_storing_again_replaces_the_entry(tmp_path):
    finished_run(tmp_path / "run")
    archive.store(tmp_path / "archive", JOB, tmp_path / "run")
    (tmp_path / "run" / "metrics.jsonl").write_text(json.dumps({"iteration": 3}) + "\n")
    archive.store(tmp_path / "archive", JOB, tmp_path / "run")
    assert archive.finished(tmp_path / "archive", JOB, iterations=3)
    assert [p.name for p in (tmp_path / "archive").iterdir()] == [archive.entry_name(JOB)]


def test_an_archived_job_is_read_as_a_run(tmp_path):
    """emreason-grade and the report read an archive entry's gzipped rationales as they are."""
    run = tmp_path / "run"
    run.mkdir()
    example = {"id": "q1", "question": "2 + 2?", "answer": "4", "answer_kind": "number", "choices": []}
    record = {"iteration": 0, "phase": "evaluation", "example": example, "hinted": False, "completion": "The answer is 4.",
              "finished": True, "answer": "4", "correct": True}
    (run / rationale_log.FOLDER).mkdir()
    (run / rationale_log.FOLDER / "000-evaluation.jsonl").write_text(json.dumps(record) + "\n")
    entry = archive.store(tmp_path / "archive", JOB, run)
    assert rationale_log.read(entry) == rationale_log.read(run)
    assert rationale_log.read(entry)[0]["example"].id == "q1"
