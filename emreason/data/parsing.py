"""Turning the raw rows of a Source into Examples, checking every field on the way.

A malformed row raises BadRowError naming the file, the row (1-based) and the field, or with
on_bad_row=skip is logged and counted."""

import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from emreason.data.answers import letter, normalize_number, option_letters
from emreason.data.config import AnswerKey, AnswerKindSetting, Fields, OnBadRow
from emreason.data.errors import BadRowError
from emreason.data.example import AnswerKind, Example
from emreason.data.sources import Source

log = logging.getLogger(__name__)

_LETTER_ANSWER = re.compile(r"\(?([A-Za-z])\)?")
_BRACKETED_LETTER = re.compile(r"\([A-Z]\)")


class _FieldProblem(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class ParsedSource:
    examples: list[Example]
    skipped_rows: int


def parse_source(source: Source, split: str, answer_kind: AnswerKindSetting, on_bad_row: OnBadRow) -> ParsedSource:
    kind = _answer_kind(source, answer_kind)
    id_prefix = f"{source.subset}/" if source.subset else ""
    examples, skipped = [], 0
    for row_number, row in enumerate(source.rows, 1):
        try:
            examples.append(_example(row, source.fields, kind, id_prefix, f"{split}/{row_number}"))
        except _FieldProblem as bad:
            error = BadRowError(source.origin, row_number, bad.field, bad.problem)
            if on_bad_row is OnBadRow.error:
                raise error from None
            log.warning("skipped %s", error)
            skipped += 1
    return ParsedSource(examples, skipped)


def _answer_kind(source: Source, setting: AnswerKindSetting) -> AnswerKind:
    fields = source.fields
    if fields.has_choices:
        return AnswerKind.LETTER
    if setting is not AnswerKindSetting.auto:
        return AnswerKind(setting.value)
    # The kind most answers have: BBH has a few broken rows, e.g. a movie_recommendation target
    # "Monsters, Inc" whose options were split at the comma; they then fail as bad rows.
    kinds: Counter[AnswerKind] = Counter()
    for row in source.rows:
        try:
            kinds[_kind_of(_answer_text(row, fields))] += 1
        except _FieldProblem:
            continue  # reported when the row itself is parsed
    return kinds.most_common(1)[0][0] if kinds else AnswerKind.TEXT


def _kind_of(answer: str) -> AnswerKind:
    if _BRACKETED_LETTER.fullmatch(answer):
        return AnswerKind.LETTER
    if normalize_number(answer) is not None:
        return AnswerKind.NUMBER
    return AnswerKind.TEXT


def _example(row: Any, fields: Fields, kind: AnswerKind, id_prefix: str, default_id: str) -> Example:
    if not isinstance(row, dict):
        raise _FieldProblem("(row)", f"expected an object with fields, found a {type(row).__name__}")
    question = _get(row, fields.question)
    if not isinstance(question, str):
        raise _FieldProblem(fields.question, f"expected text, found a {type(question).__name__}")
    if not question.strip():
        raise _FieldProblem(fields.question, "the question is empty")
    choices = _choices(row, fields)
    answer = _answer_text(row, fields)
    if choices:
        answer = _choice_letter(answer, row, fields, choices)
    else:
        answer = _short_answer(answer, kind, question, fields.answer)
    row_id = default_id if fields.id is None else _scalar(row, fields.id)
    return Example(f"{id_prefix}{row_id}", question.strip(), answer, kind, choices)


def _get(row: dict, name: str) -> Any:
    """The value of a field, following dots into nested objects."""
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            fields = sorted(value) if isinstance(value, dict) else []
            raise _FieldProblem(name, f"missing (the row has {fields})")
        value = value[part]
    if value is None:
        raise _FieldProblem(name, "missing (null)")
    return value


def _scalar(row: dict, name: str) -> str:
    value = _get(row, name)
    if isinstance(value, (bool, list, dict)):
        raise _FieldProblem(name, f"expected text or a number, found {value!r}")
    return str(value).strip()


def _choices(row: dict, fields: Fields) -> tuple[str, ...]:
    if fields.choice_columns:
        return tuple(_scalar(row, column) for column in fields.choice_columns)
    if fields.choices is None:
        return ()
    values = _get(row, fields.choices)
    if not isinstance(values, list):
        raise _FieldProblem(fields.choices, f"expected a list of choices, found a {type(values).__name__}")
    if any(value is None or isinstance(value, (bool, list, dict)) for value in values):
        raise _FieldProblem(fields.choices, f"expected a list of texts, found {values!r}")
    if not 2 <= len(values) <= 26:
        raise _FieldProblem(fields.choices, f"expected 2 to 26 choices, found {len(values)}")
    return tuple(str(value).strip() for value in values)


def _answer_text(row: dict, fields: Fields) -> str:
    value = _scalar(row, fields.answer)
    if fields.answer_pattern is not None:
        match = re.search(fields.answer_pattern, value, re.MULTILINE)
        if match is None:
            raise _FieldProblem(fields.answer, f"no match for answer_pattern {fields.answer_pattern!r}")
        value = match.group(1).strip()
    if not value:
        raise _FieldProblem(fields.answer, "the answer is empty")
    return value


def _choice_letter(answer: str, row: dict, fields: Fields, choices: tuple[str, ...]) -> str:
    """The letter of the correct choice, from the answer field read as fields.answer_key says."""
    if fields.answer_key is AnswerKey.letter:
        match = _LETTER_ANSWER.fullmatch(answer)
        position = ord(match.group(1).upper()) - ord("A") if match else None
    elif fields.answer_key is AnswerKey.index:
        position = int(answer) if answer.isdigit() else None
    elif fields.answer_key is AnswerKey.label:
        labels = _get(row, fields.choice_labels)
        if not isinstance(labels, list) or len(labels) != len(choices):
            raise _FieldProblem(fields.choice_labels, f"expected one label per choice, found {labels!r}")
        labels = [str(label).strip() for label in labels]
        position = labels.index(answer) if answer in labels else None
    else:
        position = choices.index(answer) if answer in choices else None
    if position is None or not 0 <= position < len(choices):
        raise _FieldProblem(
            fields.answer, f"{answer!r} is not among the {len(choices)} choices ({fields.answer_key.value})"
        )
    return letter(position)


def _short_answer(answer: str, kind: AnswerKind, question: str, field: str) -> str:
    if kind is AnswerKind.NUMBER:
        number = normalize_number(answer)
        if number is None:
            raise _FieldProblem(field, f"expected a number, found {answer!r}")
        return number
    if kind is AnswerKind.LETTER:
        # The options are written inside the question, as "(A) ..." lines (BBH).
        match = _LETTER_ANSWER.fullmatch(answer)
        options = option_letters(question)
        if match is None or match.group(1).upper() not in options:
            raise _FieldProblem(field, f"{answer!r} is not one of the options ({options or 'none'}) in the question")
        return match.group(1).upper()
    return answer
