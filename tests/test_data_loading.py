"""Loading through the real conf/dataset/*.yaml: every split of every benchmark in ../shared/data,
your own files through the generic configs, and the errors malformed data and configs raise."""

import csv
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException

from emreason.data.config import DatasetConfig
from emreason.data.errors import BadRowError, DatasetError, DatasetUnavailableError
from emreason.data.example import AnswerKind, Example
from emreason.data.grading import grade
from emreason.data.loading import Benchmark, load_benchmark

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"

ConfigStore.instance().store(group="dataset", name="base_dataset", node=DatasetConfig)


def dataset_config(name: str, *overrides: str):
    """conf/dataset/<name>.yaml composed by Hydra onto DatasetConfig; overrides are under dataset."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(overrides=[f"+dataset={name}", f"+data_dir={DATA_DIR}", *(f"dataset.{o}" for o in overrides)])
    return cfg.dataset


def load(name: str, *overrides: str, seed: int = 0) -> Benchmark:
    return load_benchmark(dataset_config(name, *overrides), seed)


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


def write_rows(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    return path


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


def test_a_field_path_that_matches_no_row_fails_at_load_time_showing_the_row(tmp_path: Path):
    path = write_rows(tmp_path / "quiz.jsonl", [GOOD_ROW, dict(GOOD_ROW, question="Sky at night?")])
    with pytest.raises(BadRowError) as error:
        load("multiple_choice", f"local_path='{path}'", "fields.choices=options.text", "on_bad_row=skip")
    assert error.value.row == 1 and error.value.field == "options.text"
    assert '{"question": str, "choices": [str, ...], "answer": str}' in str(error.value)


def test_the_same_question_with_two_gold_answers_is_two_bad_rows(tmp_path: Path):
    rows = [GOOD_ROW, dict(GOOD_ROW, question="Sky at night?"), dict(GOOD_ROW, answer="A")]
    path = write_rows(tmp_path / "quiz.jsonl", rows)
    with pytest.raises(BadRowError) as error:
        load("multiple_choice", f"local_path='{path}'", "fields.choices=choices")
    assert (error.value.row, error.value.field) == (1, "answer")
    assert "the same question as row 3 with another answer" in str(error.value)
    skipped = load("multiple_choice", f"local_path='{path}'", "fields.choices=choices", "on_bad_row=skip")
    assert skipped.skipped_rows == 2 and len(skipped.train + skipped.test) == 1


# Malformed data: every error names the file, the row and the field.

GOOD_ROW = {"question": "What colour is the sky?", "choices": COLOURS, "answer": "C"}
BAD_ROWS = [
    ({"question": "Which is red?", "choices": COLOURS}, "answer", "missing"),
    ({"question": "Which is red?", "choices": COLOURS, "answer": None}, "answer", "missing (null)"),
    ({"question": "Which is red?", "choices": COLOURS, "answer": ""}, "answer", "empty"),
    ({"question": "Which is red?", "choices": COLOURS, "answer": "E"}, "answer", "not among the 4 choices"),
    ({"question": "   ", "choices": COLOURS, "answer": "A"}, "question", "empty"),
    ({"question": 42, "choices": COLOURS, "answer": "A"}, "question", "expected text"),
    ({"question": "Which is red?", "choices": "red, green", "answer": "A"}, "choices", "expected a list"),
    (
        {"question": "Which is red?", "choices": [["red"], "green"], "answer": "A"},
        "choices",
        "expected a list of texts",
    ),
    ({"question": "Which is red?", "choices": ["red"], "answer": "A"}, "choices", "2 to 26 choices"),
    ({"question": "Which is red?", "choices": COLOURS, "answer": ["A"]}, "answer", "expected text or a number"),
    (["Which is red?", "A"], "(row)", "expected an object"),
]


def quiz_with_a_bad_row(tmp_path: Path, bad_row) -> Path:
    return write_rows(tmp_path / "quiz.jsonl", [GOOD_ROW, bad_row, dict(GOOD_ROW, question="Sky at night?")])


@pytest.mark.parametrize(("bad_row", "field", "problem"), BAD_ROWS)
def test_a_bad_row_is_named_by_file_row_and_field(tmp_path: Path, bad_row, field: str, problem: str):
    path = quiz_with_a_bad_row(tmp_path, bad_row)
    with pytest.raises(BadRowError) as error:
        load("multiple_choice", f"local_path='{path}'", "fields.choices=choices")
    assert (error.value.origin, error.value.row, error.value.field) == (str(path), 2, field)
    assert str(error.value).startswith(f"{path}, row 2, field '{field}': ")
    assert problem in str(error.value)


def test_bad_rows_are_skipped_and_counted_on_request(tmp_path: Path):
    rows = [GOOD_ROW] + [row for row, _, _ in BAD_ROWS] + [dict(GOOD_ROW, question="Sky at night?")]
    path = write_rows(tmp_path / "quiz.jsonl", rows)
    benchmark = load("multiple_choice", f"local_path='{path}'", "fields.choices=choices", "on_bad_row=skip")
    assert benchmark.skipped_rows == len(BAD_ROWS)
    assert len(benchmark.train) + len(benchmark.test) == 2


def test_a_headerless_csv_row_with_a_missing_column(tmp_path: Path):
    test_file = tmp_path / "mmlu" / "test" / "anatomy_test.csv"
    test_file.parent.mkdir(parents=True)
    test_file.write_text('What is bone?,tissue,gas,liquid,plasma,A\n"A multi-line\nquestion?",a,b,c,d\n')
    with pytest.raises(BadRowError, match=r"anatomy_test.csv, row 2, field 'answer': missing"):
        load("mmlu", f"local_path='{tmp_path / 'mmlu'}'")


def test_a_gsm8k_solution_without_its_final_number(tmp_path: Path):
    write_rows(tmp_path / "train.jsonl", [{"question": "1 + 1?", "answer": "1 + 1 = 2\n#### 2"}])
    write_rows(tmp_path / "test.jsonl", [{"question": "2 + 2?", "answer": "2 + 2 = 4"}])
    with pytest.raises(BadRowError, match=r"test.jsonl, row 1, field 'answer': no match for answer_pattern"):
        load("gsm8k", f"local_path='{tmp_path}'")


def test_a_missing_local_path_names_the_path_and_the_key(tmp_path: Path):
    with pytest.raises(DatasetUnavailableError, match=r"dataset.local_path=.*nowhere.jsonl does not exist"):
        load("multiple_choice", f"local_path='{tmp_path / 'nowhere.jsonl'}'")


def test_a_missing_split_file_names_the_split_and_the_keys(tmp_path: Path):
    write_rows(tmp_path / "test.jsonl", [GOOD_ROW])
    with pytest.raises(DatasetError, match=r"no file for split 'train'.*dataset.train_split"):
        load("multiple_choice", f"local_path='{tmp_path}'", "train_split=train", "fields.choices=choices")


@pytest.mark.parametrize(
    ("file_name", "content", "problem"),
    [
        ("quiz.jsonl", "", "has no rows"),
        ("quiz.jsonl", "\n\n", "has no rows"),
        ("quiz.json", "[]", "has no rows"),
        ("quiz.csv", "question,choices,answer\n", "has no rows"),
        ("quiz.jsonl", '{"question": "a"\n', "line 1 is not valid JSON"),
        ("quiz.json", '{"canary": "x", "examples": []}', r"set dataset.json_records_key .* \['canary', 'examples'\]"),
        ("quiz.txt", "What?", "set dataset.file_format"),
    ],
)
def test_an_empty_or_unreadable_file(tmp_path: Path, file_name: str, content: str, problem: str):
    path = tmp_path / file_name
    path.write_text(content)
    with pytest.raises(DatasetError, match=f"{path}: .*{problem}"):
        load("multiple_choice", f"local_path='{path}'", "fields.choices=choices")


def test_offline_without_a_local_copy_says_what_to_set(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DatasetUnavailableError, match=r"dataset arc_easy: cannot load .*dataset.local_path="):
        load("arc_easy", "local_path=null", "hub_id=emreason-tests/no-such-dataset")


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("mmlu", ["subjects=[anatomy]", "tasks=[navigate]"], "set dataset.subjects or dataset.tasks, not both"),
        ("mmlu", ["subjects=[astrology]"], r"no data for \['astrology'\] in split 'test'.*'anatomy'"),
        ("bbh", ["train_fraction=1.0"], "dataset.train_fraction=1.0 is out of range: allowed > 0 and < 1"),
        ("arc_easy", ["train_split=test"], "set dataset.train_split=null"),
        (
            "arc_easy",
            ["fields.choice_labels=null"],
            "dataset.fields.answer_key=label needs dataset.fields.choice_labels",
        ),
        ("openbookqa", ["answer_kind=number"], "questions with choices have letter answers"),
    ],
)
def test_config_mistakes_are_caught_before_reading_rows(name: str, overrides: list[str], message: str):
    with pytest.raises(DatasetError, match=message):
        load(name, *overrides)


def test_hub_rows_use_the_hub_field_layout_and_one_hub_subset_per_task(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def load_dataset(hub_id: str, subset: str, split: str):
        calls.append((hub_id, subset, split))
        if hub_id == "allenai/openbookqa":
            choices = {"text": ["cold", "water", "heat", "humidity"], "label": ["A", "B", "C", "D"]}
            return datasets.Dataset.from_list(
                [
                    {"id": f"{split}-{n}", "question_stem": f"Q{n} of {split}?", "choices": choices, "answerKey": "C"}
                    for n in range(4)
                ]
            )
        return datasets.Dataset.from_list(
            [{"input": f"{subset} {n}?\nOptions:\n(A) x\n(B) y", "target": "(B)"} for n in range(4)]
        )

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(datasets, "get_dataset_config_names", lambda hub_id: ["navigate", "snarks"])
    openbookqa = load("openbookqa", "local_path=null")
    assert calls == [("allenai/openbookqa", "main", "test"), ("allenai/openbookqa", "main", "train")]
    assert openbookqa.test[0] == Example(
        "test-0", "Q0 of test?", "C", AnswerKind.LETTER, ("cold", "water", "heat", "humidity")
    )
    bbh = load("bbh", "local_path=null")
    assert calls[2:] == [("lukaemon/bbh", "navigate", "test"), ("lukaemon/bbh", "snarks", "test")]
    assert {example.id for example in bbh.train + bbh.test} == {
        f"{task}/test/{n}" for task in ["navigate", "snarks"] for n in range(1, 5)
    }
