"""The one question type everything downstream of the loaders works with."""

from dataclasses import dataclass, field
from enum import Enum


class AnswerKind(str, Enum):
    LETTER = "letter"  # multiple choice: the answer is a choice letter "A".."Z"
    NUMBER = "number"  # a normalised number string: "42", "-3.5"
    YES_NO = "yes_no"  # yes or no (true or false): compared by polarity
    TEXT = "text"  # free text, compared after normalisation


@dataclass(frozen=True)
class Example:
    id: str
    question: str
    answer: str
    answer_kind: AnswerKind
    # The choice texts, in letter order (A, B, ...); empty for short-answer questions.
    choices: tuple[str, ...] = field(default=())
