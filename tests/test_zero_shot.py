"""The zero-shot baseline evaluated once and reused by every arm (emreason/zero_shot.py)."""

import json

from emreason import rationale_log
from emreason.data.example import AnswerKind, Example
from emreason.generation.completion import Completion
from emreason.samplers.base import Rationale
from emreason.zero_shot import baseline, cache_key

TEST = [Example(f"q{i}", f"Question {i}?", "A", AnswerKind.LETTER, ("a", "b")) for i in range(3)]
CONFIG = {"model": {"name": "tiny"}, "dataset": {"name": "arc_easy"}, "generator": {"max_new_tokens": 8}, "seed": 0,
          "sampler": {"name": "pps"}}


class FakeEvaluation:
    """Stands in for the engine's evaluation: writes graded answers into the run and counts calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, run_dir):
        def evaluate() -> dict:
            self.calls += 1
            answers = [Rationale(q, Completion("The answer is (A).", (1, 2), True), "A", True, hinted=False) for q in TEST]
            rationale_log.write(run_dir, 0, "evaluation", answers)
            return {"iteration": 0, "test_accuracy": 1.0, "eval_s": 12.5}
        return evaluate


def test_one_evaluation_serves_every_arm(tmp_path):
    evaluation = FakeEvaluation()
    key = cache_key(CONFIG, TEST)
    rows = {}
    for arm in ["rs", "star", "pps"]:
        run_dir = tmp_path / arm
        rows[arm] = baseline(tmp_path / "zero_shot", key, run_dir, evaluation(run_dir))
    assert evaluation.calls == 1
    assert rows["rs"] == {"iteration": 0, "test_accuracy": 1.0, "eval_s": 12.5}
    assert rows["star"] == rows["pps"] == {**rows["rs"], "zero_shot_cached": True}
    graded = [[(r["example"].id, r["correct"]) for r in rationale_log.read(tmp_path / arm)] for arm in rows]
    assert graded[0] == graded[1] == graded[2] == [("q0", True), ("q1", True), ("q2", True)]
    assert [p.name for p in (tmp_path / "zero_shot").iterdir()] == [key]  # no staging folder left


def test_without_a_cache_every_job_evaluates(tmp_path):
    evaluation = FakeEvaluation()
    for arm in ["rs", "pps"]:
        baseline(None, cache_key(CONFIG, TEST), tmp_path / arm, evaluation(tmp_path / arm))
    assert evaluation.calls == 2


def test_the_key_is_what_decides_the_evaluation():
    key = cache_key(CONFIG, TEST)
    assert cache_key({**CONFIG, "sampler": {"name": "rs"}}, TEST) == key  # arms share it
    assert cache_key({**CONFIG, "seed": 1}, TEST) != key
    assert cache_key({**CONFIG, "model": {"name": "other"}}, TEST) != key
    assert cache_key({**CONFIG, "generator": {"max_new_tokens": 9}}, TEST) != key
    assert cache_key(CONFIG, TEST[:2]) != key


def test_a_stored_row_is_read_back_as_written(tmp_path):
    key = cache_key(CONFIG, TEST)
    baseline(tmp_path / "cache", key, tmp_path / "a", FakeEvaluation()(tmp_path / "a"))
    assert json.loads((tmp_path / "cache" / key / "metrics_row.json").read_text())["eval_s"] == 12.5
