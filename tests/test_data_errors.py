"""Malformed data and dataset configs: every error names the file, the row and the field, or
the key to set; bad rows are skipped and counted on request."""

from pathlib import Path

import pytest
from fakes import load, write_rows

from emreason.data.errors import BadRowError, DatasetError, DatasetUnavailableError
from emreason.data.example import AnswerKind, Example

COLOURS = ["red", "green", "blue", "yellow"]


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
