"""The study's section of `emreason-report`, on constructed runs whose per-question grades are
known: intervals, paired differences, verdicts, lengths and cost."""

import json
from pathlib import Path

import pytest
import yaml

from emreason import rationale_log
from emreason.data.example import AnswerKind, Example
from emreason.generation.completion import Completion
from emreason.report import main
from emreason.samplers.base import Rationale
from emreason.study_report import graded

QUESTIONS = 120
ZERO_SHOT_RIGHT = 30
# Questions each arm answers beyond the zero-shot ones, and its rationales' length in words.
ARMS = {"rs": (0, 60), "star": (10, 60), "pps": (40, 20), "trice": (0, 60), "trice_no_cv": (40, 60)}
SEEDS = [0, 1]


def questions_of(seed: int) -> list[Example]:
    return [Example(f"s{seed}-q{i}", f"Question {i}?", "A", AnswerKind.LETTER, ("a", "b", "c", "d")) for i in range(QUESTIONS)]


def evaluation(seed: int, right: int, words: int) -> list[Rationale]:
    """Graded answers: the first `right` questions correct, each answer `words` words long."""

    def text(letter: str) -> str:
        return " ".join(["word"] * (words - 4) + ["The", "answer", "is", f"({letter})."])

    return [
        Rationale(q, Completion(text("A" if i < right else "B"), (1,) * words, True), "A" if i < right else "B", i < right, hinted=False)
        for i, q in enumerate(questions_of(seed))
    ]


def write_run(job_dir: Path, arm: str, seed: int, dataset: str = "arc_easy") -> None:
    extra, words = ARMS[arm]
    sampler = {"name": arm.removesuffix("_no_cv")} | ({"control_variate": arm == "trice"} if arm.startswith("trice") else {})
    config = {"dataset": {"name": dataset}, "model": {"name": "tiny"}, "sampler": sampler, "seed": seed, "em": {"iterations": 1}}
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [
        {"iteration": 0, "test_accuracy": ZERO_SHOT_RIGHT / QUESTIONS, "eval_s": 50.0},
        {"iteration": 1, "test_accuracy": (ZERO_SHOT_RIGHT + extra) / QUESTIONS, "tokens_generated": 1000 * (seed + 1),
         "rationales_kept": 10, "e_step_s": 100.0, "m_step_s": 40.0, "sync_s": 1.0, "eval_s": 59.0},
    ]
    (job_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    rationale_log.write(job_dir, 0, "evaluation", evaluation(seed, ZERO_SHOT_RIGHT, 60))
    rationale_log.write(job_dir, 1, "evaluation", evaluation(seed, ZERO_SHOT_RIGHT + extra, words))


def write_study(sweep: Path, arms=tuple(ARMS)) -> None:
    for number, (arm, seed) in enumerate((arm, seed) for arm in arms for seed in SEEDS):
        write_run(sweep / str(number), arm, seed)


def tables(path: Path) -> dict[str, list[dict[str, str]]]:
    """summary.md's tables by their '## ' title, each as a list of rows keyed by header."""
    found, title, lines = {}, None, []
    for line in path.read_text().splitlines() + [""]:
        if line.startswith("## "):
            title = line[3:]
        elif line.startswith("|"):
            lines.append([cell.strip() for cell in line.strip("|").split("|")])
        elif lines:
            if title is not None:
                found[title] = [dict(zip(lines[0], row)) for row in lines[2:]]
            lines = []
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("study")
    write_study(sweep)
    main([str(sweep)])
    return sweep / "report"


def test_verdicts_follow_the_constructed_outcomes(report):
    verdicts = {row["claim"]: row["verdict"].split()[0] for row in tables(report / "summary.md")["Verdicts"]}
    # rs and trice answer exactly the zero-shot questions: no gain shown, none refuted.
    assert verdicts["1"] == "inconclusive"
    assert verdicts["2"] == "held"  # pps +40 and +30 questions of 120 in both seeds
    assert verdicts["3"] == "held"  # pps 20 words, every other arm 60
    assert verdicts["4"] == "refuted"  # trice answers 40 fewer than trice without CV
    assert verdicts["5"] == "held"  # rs and trice answer the same questions right


def test_accuracy_with_intervals_and_chance(report):
    rows = {row["arm"]: row for row in tables(report / "summary.md")["Final test accuracy"]}
    assert set(rows) == {"zero-shot", *ARMS}
    for arm, (extra, _) in [("zero-shot", (0, 0)), *ARMS.items()]:
        accuracy = (ZERO_SHOT_RIGHT + extra) / QUESTIONS
        estimate, low, high = (float(x) for x in rows[arm]["accuracy [95% CI]"].replace("[", "").replace("]", "").replace(",", "").split())
        assert estimate == pytest.approx(accuracy, abs=5e-4)
        assert low < estimate < high and high - low < 0.2
        assert rows[arm]["per seed"] == f"{accuracy:.3f}, {accuracy:.3f}" and rows[arm]["seeds"] == "2"
        assert rows[arm]["chance"] == "0.250"
    # Every gold is A: the answers carry no information about the question beyond a constant.
    assert rows["pps"]["kappa per seed"] == "+0.000, +0.000"
    assert rows["zero-shot"]["commonest answer"] == "B 75%, B 75%"  # 90 of 120 answered B
    assert rows["pps"]["commonest answer"] == "A 58%, A 58%"  # 70 of 120 answered A


def test_paired_differences_have_p_values(report):
    rows = {row["difference"]: row for row in tables(report / "summary.md")["Paired differences in test accuracy"]}
    assert len(rows) == 5 + 10  # each arm against zero-shot, each pair of arms
    assert rows["pps − zero-shot"]["difference [95% CI]"].startswith("+0.333")
    assert float(rows["pps − zero-shot"]["p"]) < 1e-10  # 80 discordant pairs, all one way
    assert float(rows["rs − zero-shot"]["p"]) == 1.0
    assert rows["rs − zero-shot"]["difference [95% CI]"] == "+0.000 [+0.000, +0.000]"


def test_lengths_and_cost(report):
    lengths = {row["arm"]: row for row in tables(report / "summary.md")["Length of the final test rationales (words)"]}
    assert lengths["pps"]["median"] == "20" and lengths["star"]["median"] == "60"
    cost = {row["arm"]: row for row in tables(report / "summary.md")["Cost per arm"]}
    assert cost["pps"]["tokens generated"] == "1500"  # seeds: 1000 and 2000
    assert cost["pps"]["tokens per kept rationale"] == "150.0"  # 3000 tokens / 20 kept
    assert cost["pps"]["wall seconds"] == "200"  # 100 + 40 + 1 + 59, iteration 0 left out


def test_report_page_holds_the_study_plots(report):
    page = (report / "report.html").read_text()
    assert "Verdicts" in page and "Final test accuracy with 95% intervals" in page
    for name in ["study_accuracy.png", "study_lengths.png", "study_curves.png"]:
        assert (report / name).read_bytes().startswith(b"\x89PNG")


def test_missing_arms_leave_claims_untested(tmp_path):
    write_study(tmp_path, arms=("rs", "pps"))
    main([str(tmp_path)])
    verdicts = {row["claim"]: row for row in tables(tmp_path / "report" / "summary.md")["Verdicts"]}
    assert verdicts["1"]["verdict"] == "not tested" and "star, trice, trice_no_cv" in verdicts["1"]["parts: difference [95% CI], p"]
    assert verdicts["3"]["verdict"] == "not tested"


def test_two_runs_of_one_arm_and_seed_are_an_error(tmp_path):
    write_run(tmp_path / "0", "pps", 0)
    write_run(tmp_path / "1", "pps", 0)
    with pytest.raises(SystemExit, match="two runs of arm pps with seed 0"):
        main([str(tmp_path)])


def test_runs_on_different_questions_are_an_error(tmp_path):
    write_run(tmp_path / "0", "pps", 0)
    write_run(tmp_path / "1", "rs", 0)
    rationale_log.write(tmp_path / "1", 1, "evaluation", evaluation(0, 10, 20)[:-1])
    with pytest.raises(SystemExit, match="different test questions with seed 0"):
        main([str(tmp_path)])


def test_collapse_and_format_per_arm(report):
    rows = {row["arm"]: row for row in tables(report / "summary.md")["Collapse and format per arm"]}
    # Every gold is A, so always answering A would score 1.0, and kappa is 0 for every arm.
    assert rows["pps"]["kappa"] == "+0.000" and rows["pps"]["constant-answer accuracy"] == "1.000"
    assert rows["pps"]["commonest answer share"] == "0.583" and rows["zero-shot"]["commonest answer share"] == "0.750"
    assert rows["pps"]["no answer"] == "0.000" and rows["pps"]["cut at limit"] == "0.000"


def test_the_report_grades_the_logged_completions_with_the_current_grader(tmp_path):
    """A job graded by an older grader: its stored grades are ignored, its completions count."""
    stale = [
        Rationale(q, Completion("Mars orbits the Sun. The answer is (A).", (1,) * 8, True), None, False, hinted=False)
        for q in questions_of(0)[:4]
    ]
    rationale_log.write(tmp_path, 0, "evaluation", stale)
    evaluation = graded(list(rationale_log.read(tmp_path, phase="evaluation")))
    assert set(evaluation.correct.values()) == {True} and evaluation.no_answer == 0.0


def test_a_partial_study_is_marked_partial(tmp_path):
    write_study(tmp_path, arms=("rs", "pps"))
    multirun = {"hydra": {"sweeper": {"params": {"arm": "rs,star,pps,trice,trice_no_cv"}}, "overrides": {"task": ["seed=0,1", "experiment=study"]}}}
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    main([str(tmp_path)])
    assert "**Partial study: 4 of the 10 planned jobs have finished.**" in (tmp_path / "report" / "summary.md").read_text()
    write_study(tmp_path / "rest", arms=("star", "trice", "trice_no_cv"))
    main([str(tmp_path)])
    assert "Partial study" not in (tmp_path / "report" / "summary.md").read_text()
