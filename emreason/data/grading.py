"""Reading the final answer out of a model's rationale and comparing it with the gold answer.

The prompts ask the model to finish with "The answer is ...", so the last such statement counts
("Answer: ...", "#### ..." too). A rationale without a readable answer is wrong, never an error."""

import re
from collections.abc import Iterator
from dataclasses import dataclass

from emreason.data.answers import LETTERS, NUMBER, normalize_number, normalize_text, option_letters
from emreason.data.example import AnswerKind, Example


@dataclass(frozen=True)
class Grade:
    # The extracted answer, normalised ("B", "1000", "valid"); None when none could be read.
    answer: str | None
    correct: bool


_STATEMENT = re.compile(r"answer(?:\s+(?:is|was|would be))?\s*:|answer\s+(?:is|was|would be)|####", re.IGNORECASE)
# A letter right after a statement: "(B)", "B.", "**B**", "option B"; a bare letter must not start
# a word ("The answer is Bob").
_STATED_LETTER = re.compile(r"[\s*_]*(?:(?:[Oo]ption|[Cc]hoice)\s+)?[*_]*(?:\(([A-Za-z])\)|([A-Z])(?!\w))")
# A completion that is nothing but a letter: "B", "(B)", "B."
_BARE_LETTER = re.compile(r"\s*\(?([A-Z])\)?\.?\s*")
# A text answer ends with its line or its sentence ("valid. The argument is..." -> "valid").
_END_OF_TEXT_ANSWER = re.compile(r"\n|(?<=[.!?])\s")


def grade(completion: str, example: Example) -> Grade:
    answer = extract_answer(completion, example)
    return Grade(answer, answer is not None and answer == _canonical(example.answer, example.answer_kind))


def extract_answer(completion: str, example: Example) -> str | None:
    if example.answer_kind is AnswerKind.LETTER:
        return _extract_letter(completion, example)
    if example.answer_kind is AnswerKind.NUMBER:
        return _extract_number(completion)
    return _extract_text(completion)


def _canonical(answer: str, kind: AnswerKind) -> str:
    if kind is AnswerKind.NUMBER:
        return normalize_number(answer) or answer
    if kind is AnswerKind.TEXT:
        return normalize_text(answer)
    return answer


def _statement_tails(completion: str) -> Iterator[str]:
    """The text after each answer statement up to the next one, the last statement first."""
    statements = list(_STATEMENT.finditer(completion))
    for index in reversed(range(len(statements))):
        end = statements[index + 1].start() if index + 1 < len(statements) else len(completion)
        yield completion[statements[index].end() : end]


def _extract_letter(completion: str, example: Example) -> str | None:
    # BBH writes the options inside the question instead of in `choices`.
    allowed = LETTERS[: len(example.choices)] if example.choices else option_letters(example.question)
    for tail in _statement_tails(completion):
        match = _STATED_LETTER.match(tail)
        if match:
            stated = (match.group(1) or match.group(2)).upper()
            return stated if stated in allowed else None
    bare = _BARE_LETTER.fullmatch(completion)
    return bare.group(1) if bare and bare.group(1) in allowed else None


def _extract_number(completion: str) -> str | None:
    for tail in _statement_tails(completion):
        match = NUMBER.search(tail)
        if match:
            return normalize_number(match.group())
    numbers = NUMBER.findall(completion)
    return normalize_number(numbers[-1]) if numbers else None


def _extract_text(completion: str) -> str | None:
    for tail in _statement_tails(completion):
        answer = normalize_text(_END_OF_TEXT_ANSWER.split(tail.strip(), maxsplit=1)[0])
        if answer:
            return answer
    # A completion of one line may be the answer itself ("True").
    lines = completion.strip().splitlines()
    if len(lines) != 1:
        return None
    return normalize_text(lines[0]) or None
