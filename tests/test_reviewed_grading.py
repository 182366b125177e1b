"""The grader against careful readers on real completions of the default model
(tests/reviewed/README.md): on every record the reader did not flag as borderline, the grader
reads the same answer (or none) and gives the same verdict."""

import json
from pathlib import Path

import pytest
from math_verify import parse, verify

from emreason.data.example import AnswerKind, Example
from emreason.data.grading import canonical, grade

REVIEWED = Path(__file__).parent / "reviewed" / "qwen2_5_coder_0_5b.jsonl"


def records() -> list[dict]:
    return [json.loads(line) for line in REVIEWED.read_text().splitlines() if line.strip()]


def example_of(record: dict) -> Example:
    fields = record["example"]
    return Example(fields["id"], fields["question"], fields["answer"], AnswerKind(fields["answer_kind"]), tuple(fields["choices"]))


def same_answer(read: str | None, labelled: str | None, kind: AnswerKind) -> bool:
    """Numbers are the same by value, as the grader compares them (math-verify): "1/5" = "0.2"."""
    if read is None or labelled is None:
        return read is labelled
    if kind is AnswerKind.NUMBER:
        return bool(verify(parse(str(labelled)), parse(read)))
    return canonical(read, kind) == canonical(str(labelled), kind)


def test_the_set_covers_the_benchmarks_modes_and_models_it_says():
    kept = records()
    assert len(kept) >= 300
    assert {r["mode"] for r in kept} == {"greedy", "sampled", "hinted"}
    assert {r["model"] for r in kept} == {"base", "after_em"}
    assert {AnswerKind(r["example"]["answer_kind"]) for r in kept} >= {AnswerKind.NUMBER, AnswerKind.LETTER, AnswerKind.YES_NO}


@pytest.mark.parametrize("record", [r for r in records() if not r["label"]["borderline"]], ids=lambda r: r["example"]["id"])
def test_the_grader_agrees_with_the_reader(record):
    example = example_of(record)
    result = grade(record["completion"], example, record["finished"])
    label = record["label"]
    assert (result.correct, same_answer(result.answer, label["answer"], example.answer_kind)) == (label["correct"], True), (
        f"grader read {result.answer!r} ({result.rule}), reader {label['answer']!r} ({label['note']})"
    )
