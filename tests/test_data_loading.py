"""Loading through the real conf/dataset/*.yaml: every split of every benchmark in ../shared/data,
and your own files through the generic configs (malformed data and config mistakes:
test_data_errors.py)."""

from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from fakes import dataset_config, load, write_rows
from hydra.errors import ConfigCompositionException

from emreason.data.config import DatasetConfig
from emreason.data.example import AnswerKind, Example
from emreason.data.grading import grade
from emreason.data.loading import Benchmark, load_benchmark


def as_a_model_writes_it(example: Example) -> str:
    if example.answer_kind is AnswerKind.LETTER:
        return f"Let me think step by step. Only one option fits, so the answer is ({example.answer})."
    if example.answer_kind is AnswerKind.NUMBER:
        return f"Adding it all up, the answer is {Decimal(example.answer):,}."
    return f"Working through it, the answer is {example.answer}."


def check_benchmark(benchmark: Benchmark) -> None:
    """What every loaded benchmark must satisfy."""
    examples = benchmark.train + benchmark.test
    assert len({example.id for example in examples}) == len(examples)
    train_questions = {(example.question, example.choices) for example in benchmark.train}
    assert not train_questions & {(example.question, example.choices) for example in benchmark.test}
    for example in examples:
        assert example.question.strip()
        if example.choices:
            assert example.answer_kind is AnswerKind.LETTER
            assert "ABCDEFGHIJKLMNOPQRSTUVWXYZ".index(example.answer) < len(example.choices)
        assert grade(as_a_model_writes_it(example), example).correct, example


# (config, overrides, the split read in full as the test split, its rows in ../shared/data/README.md)
OWN_SPLITS = [
    ("arc_easy", ["train_split=validation", "test_split=train"], 2251),
    ("arc_easy", ["train_split=train", "test_split=validation"], 570),
    ("arc_easy", ["train_split=train", "test_split=test"], 2376),
    ("openbookqa", ["train_split=dev", "test_split=train"], 4957),
    ("openbookqa", ["train_split=train", "test_split=dev"], 500),
    ("openbookqa", ["train_split=train", "test_split=test"], 500),
    ("gsm8k", ["train_split=test", "test_split=train"], 7473),
    ("gsm8k", ["train_split=train", "test_split=test"], 1319),
    ("gsm8k", ["train_split=train", "test_split=test_socratic"], 1319),
    ("mmlu", ["train_split=val", "test_split=dev"], 285),
    ("mmlu", ["train_split=dev", "test_split=val"], 1531),
    ("mmlu", ["train_split=dev", "test_split=test"], 14042),
]


@pytest.mark.parametrize(("name", "overrides", "rows"), OWN_SPLITS)
def test_every_split_loads_in_full(name: str, overrides: list[str], rows: int):
    benchmark = load(name, *overrides)
    assert len(benchmark.test) == rows
    assert benchmark.skipped_rows == 0
    check_benchmark(benchmark)


def test_gsm8k_validation_is_held_out_of_train_whichever_split_a_job_evaluates_on():
    evaluated_on_test = load("gsm8k", "validation_from_train=500")
    validation = load("gsm8k", "validation_from_train=500", "test_split=held_out")
    held_out = {example.id for example in validation.test}
    assert len(held_out) == 500 and len(evaluated_on_test.train) == len(validation.train) == 7473 - 500
    assert not held_out & {example.id for example in evaluated_on_test.train}
    assert held_out == {e.id for e in load("gsm8k", "validation_from_train=500", "test_split=held_out", "split_seed=0").test}
    assert held_out != {e.id for e in load("gsm8k", "validation_from_train=500", "test_split=held_out", "split_seed=1").test}


def test_held_out_needs_train_questions_to_set_aside():
    with pytest.raises(Exception, match="dataset.test_split=held_out evaluates on train questions set aside"):
        load("gsm8k", "test_split=held_out", "validation_from_train=0")


def test_arc_easy_default_split_drops_the_train_questions_that_are_in_test():
    benchmark = load("arc_easy")
    assert (len(benchmark.train), len(benchmark.test)) == (2251 - 2, 2376)
    assert all(example.answer_kind is AnswerKind.LETTER for example in benchmark.test)
    assert Counter(len(example.choices) for example in benchmark.test) == {4: 2365, 3: 7, 5: 4}
    # Some ARC questions label their choices 1-4; their keys become letters.
    by_id = {example.id: example for example in benchmark.train}
    assert by_id["Mercury_7220990"].answer == "B"


def test_arc_challenge_test_split_is_divided_in_half():
    benchmark = load("arc_challenge")
    assert (len(benchmark.train), len(benchmark.test)) == (586, 586)
    check_benchmark(benchmark)


def test_mmlu_test_split_is_divided_per_subject():
    benchmark = load("mmlu")
    subjects = Counter(example.id.split("/")[0] for example in benchmark.test)
    assert len(subjects) == 57
    assert min(subjects.values()) >= 45  # the smallest subject has 100 test questions
    # 35 questions stand in two subjects' test files; each is kept on one side only.
    assert len(benchmark.train) + len(benchmark.test) == 14042 - 35
    check_benchmark(benchmark)


def test_mmlu_subjects_select_files():
    benchmark = load("mmlu", "subjects=[anatomy,virology]")
    assert {example.id.split("/")[0] for example in benchmark.train + benchmark.test} == {"anatomy", "virology"}
    assert len(benchmark.train) + len(benchmark.test) == 135 + 166


BBH_NUMBER_TASKS = {"multistep_arithmetic_two", "object_counting"}
BBH_YES_NO_TASKS = {"boolean_expressions", "causal_judgement", "navigate", "sports_understanding", "web_of_lies"}
BBH_TEXT_TASKS = {"dyck_languages", "formal_fallacies", "word_sorting"}


def test_bbh_all_tasks_with_their_answer_kinds():
    benchmark = load("bbh")
    tasks: dict[str, list[Example]] = {}
    for example in benchmark.train + benchmark.test:
        tasks.setdefault(example.id.split("/")[0], []).append(example)
    assert len(tasks) == 27
    sizes = {task: len(examples) for task, examples in tasks.items() if len(examples) != 250}
    # The three rows whose target is not among their options are skipped, and causal_judgement's
    # two pairs of rows that ask the same question with opposite answers.
    assert sizes == {
        "causal_judgement": 183,
        "penguins_in_a_table": 146,
        "snarks": 178,
        "movie_recommendation": 249,
        "ruin_names": 248,
    }
    assert benchmark.skipped_rows == 7
    for task, examples in tasks.items():
        expected = (
            AnswerKind.NUMBER
            if task in BBH_NUMBER_TASKS
            else AnswerKind.YES_NO
            if task in BBH_YES_NO_TASKS
            else AnswerKind.TEXT
            if task in BBH_TEXT_TASKS
            else AnswerKind.LETTER
        )
        assert {example.answer_kind for example in examples} == {expected}, task
    check_benchmark(benchmark)


def test_bbh_task_division_does_not_depend_on_the_other_tasks_or_the_run_seed():
    alone = load("bbh", "tasks=[navigate]", seed=1)
    together = load("bbh", "tasks=[date_understanding,navigate]", seed=2)
    assert alone.train == [example for example in together.train if example.id.startswith("navigate/")]
    assert (len(alone.train), len(alone.test)) == (125, 125)


def test_sampling_is_deterministic_by_seed():
    first = load("arc_easy", "train_size=100", "test_size=50", seed=0)
    again = load("arc_easy", "train_size=100", "test_size=50", seed=0)
    other = load("arc_easy", "train_size=100", "test_size=50", seed=1)
    assert (len(first.train), len(first.test)) == (100, 50)
    assert first == again
    assert first.train != other.train and first.test != other.test
    full = load("arc_easy")
    assert set(first.train) <= set(full.train) and set(first.test) <= set(full.test)


def test_a_sample_larger_than_the_split_takes_it_all():
    assert len(load("arc_challenge", "test_size=10000").test) == 586


def test_closed_choices_are_rejected_with_the_allowed_values():
    with pytest.raises(ConfigCompositionException) as error:
        dataset_config("arc_easy", "on_bad_row=maybe")
    assert "[error, skip]" in str(error.value.__cause__)


# Your own benchmark through the generic configs, in every file format.


COLOURS = ["red", "green", "blue", "yellow"]
QUIZ = [(f"What colour is thing {n}?", n % 4) for n in range(10)]  # (question, index of the answer)

MULTIPLE_CHOICE_FILES = [
    (
        "quiz.csv",
        [{"question": q, "a": "red", "b": "green", "c": "blue", "d": "yellow", "answer": "ABCD"[k]} for q, k in QUIZ],
        ["fields.choice_columns=[a,b,c,d]"],
    ),
    (
        "quiz.json",
        [{"uid": f"q{n}", "q": q, "options": COLOURS, "correct": k} for n, (q, k) in enumerate(QUIZ)],
        [
            "fields.id=uid",
            "fields.question=q",
            "fields.choices=options",
            "fields.answer=correct",
            "fields.answer_key=index",
        ],
    ),
    (
        "quiz.jsonl",
        [{"question": q, "choices": COLOURS, "answer": COLOURS[k]} for q, k in QUIZ],
        ["fields.choices=choices", "fields.answer_key=text"],
    ),
    (
        "quiz.parquet",
        [
            {"item": {"stem": q, "choices": {"text": COLOURS, "label": ["1", "2", "3", "4"]}}, "key": str(k + 1)}
            for q, k in QUIZ
        ],
        [
            "fields.question=item.stem",
            "fields.choices=item.choices.text",
            "fields.choice_labels=item.choices.label",
            "fields.answer=key",
            "fields.answer_key=label",
        ],
    ),
]


@pytest.mark.parametrize(("file_name", "rows", "overrides"), MULTIPLE_CHOICE_FILES)
def test_multiple_choice_config_reads_your_file(tmp_path: Path, file_name: str, rows: list, overrides: list[str]):
    path = write_rows(tmp_path / file_name, rows)
    benchmark = load("multiple_choice", f"local_path='{path}'", *overrides)
    assert (len(benchmark.train), len(benchmark.test)) == (5, 5)
    gold = {q: "ABCD"[k] for q, k in QUIZ}
    for example in benchmark.train + benchmark.test:
        assert example.choices == tuple(COLOURS)
        assert example.answer == gold[example.question]
    check_benchmark(benchmark)


def test_multiple_choice_config_reads_a_folder_of_split_files_from_a_relative_path(tmp_path: Path, monkeypatch):
    rows = MULTIPLE_CHOICE_FILES[2][1]
    write_rows(tmp_path / "quiz" / "train.jsonl", rows[:7])
    write_rows(tmp_path / "quiz" / "test.jsonl", rows[7:])
    monkeypatch.chdir(tmp_path)
    benchmark = load(
        "multiple_choice", "local_path=quiz", "train_split=train", "fields.choices=choices", "fields.answer_key=text"
    )
    assert [example.id for example in benchmark.train] == [f"train/{n}" for n in range(1, 8)]
    assert [example.id for example in benchmark.test] == ["test/1", "test/2", "test/3"]


SUMS = [
    {"question": f"What is {n} + {n}?", "solution": f"{n} + {n} = {2 * n}\nAnswer: {2 * n:,}"}
    for n in range(0, 2000, 100)
]
CAPITALS = [
    {"q": "Capital of France?", "a": "Paris"},
    {"q": "Capital of Italy?", "a": "Rome"},
    {"q": "Capital of Spain?", "a": "Madrid"},
    {"q": "Capital of Peru?", "a": "Lima"},
]


def test_short_answer_config_reads_numbers_inside_solutions(tmp_path: Path):
    path = write_rows(tmp_path / "sums.jsonl", SUMS)
    benchmark = load(
        "short_answer", f"local_path='{path}'", "fields.answer=solution", "fields.answer_pattern='Answer: (.+)'"
    )
    examples = benchmark.train + benchmark.test
    assert len(examples) == 20 and {example.answer_kind for example in examples} == {AnswerKind.NUMBER}
    assert "3600" in {example.answer for example in examples}  # written "3,600" in the file
    check_benchmark(benchmark)


def test_short_answer_config_reads_text_answers(tmp_path: Path):
    path = write_rows(tmp_path / "capitals.csv", CAPITALS)
    benchmark = load("short_answer", f"local_path='{path}'", "fields.question=q", "fields.answer=a")
    examples = benchmark.train + benchmark.test
    assert {example.answer for example in examples} == {"Paris", "Rome", "Madrid", "Lima"}
    assert {example.answer_kind for example in examples} == {AnswerKind.TEXT}
    check_benchmark(benchmark)


def test_a_dataset_config_built_in_python_loads_too(tmp_path: Path):
    path = write_rows(tmp_path / "capitals.parquet", [{"question": row["q"], "answer": row["a"]} for row in CAPITALS])
    benchmark = load_benchmark(DatasetConfig(name="capitals", local_path=str(path), train_split=None), seed=0)
    assert len(benchmark.train) + len(benchmark.test) == 4


def test_boolean_gold_answers_load_as_yes_no(tmp_path: Path):
    rows = [{"question": f"Is {n} even?", "answer": n % 2 == 0} for n in range(10)]
    benchmark = load("short_answer", f"local_path='{write_rows(tmp_path / 'even.jsonl', rows)}'")
    examples = benchmark.train + benchmark.test
    assert {example.answer_kind for example in examples} == {AnswerKind.YES_NO}
    assert {example.answer for example in examples} == {"Yes", "No"}
    assert grade("4 is divisible by 2. The answer is yes.", Example("x", "Is 4 even?", "Yes", AnswerKind.YES_NO)).correct


def test_choices_as_a_list_of_objects_with_label_and_text_need_no_conversion(tmp_path: Path):
    rows = [
        {
            "question": f"Which colour is number {n}?",
            "choices": [{"label": label, "text": text} for label, text in zip("1234", COLOURS)],
            "answer": str(n % 4 + 1),
        }
        for n in range(8)
    ]
    path = write_rows(tmp_path / "quiz.json", rows)
    by_label = load(
        "multiple_choice",
        f"local_path='{path}'",
        "fields.choices=choices.text",
        "fields.choice_labels=choices.label",
        "fields.answer_key=label",
    )
    examples = by_label.train + by_label.test
    assert {example.choices for example in examples} == {tuple(COLOURS)}
    assert sorted(example.answer for example in examples) == sorted("ABCD" * 2)
    letters = write_rows(tmp_path / "letters.json", [dict(row, answer="ABCD"[int(row["answer"]) - 1]) for row in rows])
    assert load("multiple_choice", f"local_path='{letters}'", "fields.choices=choices").test[0].choices == tuple(COLOURS)
