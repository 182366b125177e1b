"""Turning the raw rows of a Source into Examples, checking every field on the way.

A malformed row raises BadRowError naming the file, the row (1-based) and the field, or with
on_bad_row=skip is logged and counted."""

import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from emreason.data.answers import letter, normalize_number, option_letters, yes_no
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
    """The Examples of a source. Raises BadRowError for the first malformed row (on_bad_row=error)
    and always when no row at all parses, since then the field mapping, not the data, is wrong."""
    kind = _answer_kind(source, answer_kind)
    id_prefix = f"{source.subset}/" if source.subset else ""
    parsed: dict[int, Example] = {}
    problems: list[BadRowError] = []
    for row_number, row in enumerate(source.rows, 1):
        try:
            parsed[row_number] = _example(row, source.fields, kind, id_prefix, f"{split}/{row_number}")
        except _FieldProblem as bad:
            problems.append(BadRowError(source.origin, row_number, bad.field, bad.problem))
    for row_number, problem in _contradictions(parsed, source.fields.answer):
        del parsed[row_number]
        problems.append(BadRowError(source.origin, row_number, source.fields.answer, problem))
    if problems and (on_bad_row is OnBadRow.error or not parsed):
        raise min(problems, key=lambda error: error.row)
    for problem in problems:
        log.warning("skipped %s", problem)
    return ParsedSource([parsed[row] for row in sorted(parsed)], len(problems))


def _contradictions(parsed: dict[int, Example], field: str) -> list[tuple[int, str]]:
    """Rows that ask the same question (text and choices) as another row but give another gold
    answer: neither can be graded, so both are bad rows (BBH causal_judgement has two such pairs)."""
    rows_of: dict[tuple, list[int]] = {}
    for row_number, example in parsed.items():
        rows_of.setdefault((example.question, example.choices), []).append(row_number)
    bad = []
    for rows in rows_of.values():
        answers = {parsed[row].answer for row in rows}
        if len(answers) > 1:
            for row in rows:
                others = ", ".join(str(other) for other in rows if other != row)
                bad.append((row, f"the same question as row {others} with another answer ({sorted(answers)})"))
    return bad


def _answer_kind(source: Source, setting: AnswerKindSetting) -> AnswerKind:
    fields = source.fields
    if fields.has_choices:
        return AnswerKind.LETTER
    if setting is not AnswerKindSetting.auto:
        return AnswerKind(setting.value)
    if _all_yes_no(source):
        return AnswerKind.YES_NO
    # The kind most answers have: BBH has a few broken rows, e.g. a movie_recommendation target
    # "Monsters, Inc" whose options were split at the comma; they then fail as bad rows.
    kinds: Counter[AnswerKind] = Counter()
    for row in source.rows:
        try:
            kinds[_kind_of(_answer_text(row, fields))] += 1
        except _FieldProblem:
            continue  # reported when the row itself is parsed
    return kinds.most_common(1)[0][0] if kinds else AnswerKind.TEXT


def _all_yes_no(source: Source) -> bool:
    answers = []
    for row in source.rows:
        try:
            answers.append(_answer_text(row, source.fields))
        except _FieldProblem:
            continue
    return bool(answers) and all(yes_no(answer) for answer in answers)


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
    """The value of a field, following dots into nested objects and into lists of objects:
    "choices.text" reads {"choices": {"text": [...]}} and {"choices": [{"text": ...}, ...]} alike."""
    value: Any = row
    for part in name.split("."):
        if isinstance(value, list) and value and all(isinstance(item, dict) and part in item for item in value):
            value = [item[part] for item in value]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise _FieldProblem(name, f"missing (the row is {describe(row)})")
    if value is None:
        raise _FieldProblem(name, "missing (null)")
    return value


def describe(value: Any, depth: int = 0) -> str:
    """The structure of a row, as field names and value types: {"q": str, "choices": [{"label": str}]}."""
    if isinstance(value, dict):
        if depth > 2:
            return "{...}"
        return "{" + ", ".join(f'"{key}": {describe(item, depth + 1)}' for key, item in list(value.items())[:12]) + "}"
    if isinstance(value, list):
        return f"[{describe(value[0], depth + 1)}, ...]" if value else "[]"
    return type(value).__name__


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
    if isinstance(values, list) and values and all(isinstance(v, dict) and "text" in v for v in values):
        values = [value["text"] for value in values]
    if not isinstance(values, list):
        raise _FieldProblem(fields.choices, f"expected a list of choices, found a {type(values).__name__}")
    if any(value is None or isinstance(value, (bool, list, dict)) for value in values):
        raise _FieldProblem(fields.choices, f"expected a list of texts, found {values!r}")
    if not 2 <= len(values) <= 26:
        raise _FieldProblem(fields.choices, f"expected 2 to 26 choices, found {len(values)}")
    return tuple(str(value).strip() for value in values)


def _answer_text(row: dict, fields: Fields) -> str:
    if isinstance(raw := _get(row, fields.answer), bool):
        return "Yes" if raw else "No"
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
    if kind is AnswerKind.YES_NO:
        if yes_no(answer) is None:
            raise _FieldProblem(field, f"expected yes/no or true/false, found {answer!r}")
        return answer
    if kind is AnswerKind.LETTER:
        # The options are written inside the question, as "(A) ..." lines (BBH).
        match = _LETTER_ANSWER.fullmatch(answer)
        options = option_letters(question)
        if match is None or match.group(1).upper() not in options:
            raise _FieldProblem(field, f"{answer!r} is not one of the options ({options or 'none'}) in the question")
        return match.group(1).upper()
    return answer
