"""Answer extraction and grading on realistic model output: right, wrong and unparseable."""

import pytest

from emreason.data.answers import normalize_number, normalize_text
from emreason.data.example import AnswerKind, Example
from emreason.data.grading import Grade, extract_answer, grade

ARC = Example("arc-1", "Which is a planet?", "B", AnswerKind.LETTER, ("the Sun", "Mars", "the Moon", "a comet"))
FIVE = Example("arc-5", "Pick one.", "E", AnswerKind.LETTER, ("a", "b", "c", "d", "e"))
BBH_LETTER = Example(
    "date_understanding/test/1",
    "Today is Christmas Eve of 1937. What is the date tomorrow in MM/DD/YYYY?\nOptions:\n"
    "(A) 12/11/1937\n(B) 12/25/1937\n(C) 01/04/1938\n(D) 12/04/1937\n(E) 12/25/2006\n(F) 07/25/1937",
    "B",
    AnswerKind.LETTER,
)
GSM = Example("gsm-1", "How many clips did Natalia sell?", "72", AnswerKind.NUMBER)
THOUSAND = Example("gsm-2", "How much does it cost?", "1000", AnswerKind.NUMBER)
NEGATIVE = Example("bbh-arith", "((-1 + 2 + 9 * 5) - (-2 + -4 + -4 * -7)) =", "-3.5", AnswerKind.NUMBER)
VALID = Example("formal_fallacies/test/1", "Is the argument valid?", "invalid", AnswerKind.TEXT)
TRUE = Example("boolean_expressions/test/1", "not ( True ) and ( True ) is", "False", AnswerKind.TEXT)
DYCK = Example("dyck_languages/test/1", "Complete the rest of the sequence: [ [ (", ") ] ]", AnswerKind.TEXT)
SORTING = Example("word_sorting/test/1", "Sort: syndrome therefrom", "syndrome therefrom", AnswerKind.TEXT)

CASES = [
    # Letters: the final statement in its usual forms.
    (ARC, "Mars orbits the Sun, so the answer is (B).", "B", True),
    (ARC, "The Sun is a star. The answer is B.", "B", True),
    (ARC, "Answer: B", "B", True),
    (ARC, "**Answer:** (B) Mars", "B", True),
    (ARC, "The correct answer is option B.", "B", True),
    (ARC, "The answer is: (b)", "B", True),
    (ARC, "Step 1: the Moon orbits Earth.\nStep 2: Mars orbits the Sun.\n\nThe answer is **(B)**.", "B", True),
    (ARC, "(B)", "B", True),
    (ARC, "The answer is (A).", "A", False),
    (ARC, "I first thought the answer is (A), but Mars orbits the Sun. The answer is (B).", "B", True),
    (ARC, "The answer is (B). Wait, the Moon is larger in the sky. The answer is (C).", "C", False),
    (ARC, "The answer is (C). I hope this answer is helpful!", "C", False),
    # Letters outside the choices, or no letter at all, are unparseable.
    (ARC, "The answer is (E).", None, False),
    (ARC, "Mars is the fourth planet from the Sun.", None, False),
    (ARC, "The answer is Mars.", None, False),
    (ARC, "", None, False),
    (FIVE, "Counting the options, the answer is (E).", "E", True),
    # BBH: the options live in the question text, so A-F are allowed there and G is not.
    (BBH_LETTER, "Christmas Eve is 12/24, so tomorrow is 12/25/1937. So the answer is (B).", "B", True),
    (BBH_LETTER, "The answer is (F).", "F", False),
    (BBH_LETTER, "The answer is (G).", None, False),
    # Numbers: after the final statement or ####, else the last number.
    (GSM, "She sold 48 / 2 = 24 clips in May. 48 + 24 = 72. The answer is 72.", "72", True),
    (GSM, "48 + 24 = 72\n#### 72", "72", True),
    (GSM, "She sold 72 clips altogether.", "72", True),
    (GSM, "The answer is 72.0", "72", True),
    (GSM, "The answer is: **72** clips.", "72", True),
    (GSM, "In May she sold 24. The answer is 24. That is half of 48.", "24", False),
    (GSM, "The answer is seventy-two.", None, False),
    (GSM, "I am not sure how to solve this.", None, False),
    (THOUSAND, "10 boxes cost $100 each, so 10 * 100 = 1000. The answer is $1,000.", "1000", True),
    (THOUSAND, "The answer is 1,000.", "1000", True),
    (THOUSAND, "The total is 1000.00 dollars.", "1000", True),
    (THOUSAND, "The answer is 100%.", "100", False),
    (THOUSAND, "It costs 10-3 = 7 more. The answer is 7.", "7", False),
    (NEGATIVE, "46 - 22 = 24, halved gives -3.5? The answer is -3.5.", "-3.5", True),
    (NEGATIVE, "The answer is −3.50.", "-3.5", True),
    (NEGATIVE, "The answer is 3.5.", "3.5", False),
    # Text: exact match after case, punctuation, articles and whitespace are set aside.
    (VALID, "The premises do not entail the conclusion. The answer is invalid.", "invalid", True),
    (VALID, "So the answer is: Invalid", "invalid", True),
    (VALID, "The answer is valid.", "valid", False),
    (VALID, "The answer is invalid. The second premise does not follow.", "invalid", True),
    (TRUE, "not True is False, and False and True is False. The answer is False.", "false", True),
    (TRUE, "The answer is **True**.", "true", False),
    (TRUE, "False", "false", True),
    (TRUE, "Let me think.\nnot True is False.", None, False),
    (DYCK, "We must close ( then [ then [. The answer is ) ] ].", ")]]", True),
    (DYCK, "The answer is )]].", ")]]", True),
    (DYCK, "The answer is ] ] ).", "]])", False),
    (SORTING, "Alphabetically: s before t. The answer is syndrome therefrom.", "syndrome therefrom", True),
    (SORTING, "The answer is therefrom syndrome.", "therefrom syndrome", False),
]


@pytest.mark.parametrize(("example", "completion", "answer", "correct"), CASES)
def test_grade(example: Example, completion: str, answer: str | None, correct: bool):
    assert grade(completion, example) == Grade(answer, correct)
    assert extract_answer(completion, example) == answer


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1,000", "1000"),
        ("$1,000", "1000"),
        ("42.", "42"),
        ("18.0", "18"),
        ("3.50", "3.5"),
        ("-0", "0"),
        ("50%", "50"),
        ("−7", "-7"),
        ("1,080", "1080"),
        ("seven", None),
        ("", None),
        ("1/2", None),
    ],
)
def test_normalize_number(text: str, number: str | None):
    assert normalize_number(text) == number


def test_normalize_text_ignores_case_punctuation_articles_and_bracket_spacing():
    assert normalize_text("  The  Answer. ") == "answer"
    assert normalize_text('"Yes"') == "yes"
    assert normalize_text("] ] )") == normalize_text("]])") == "]])"
    assert normalize_text("an apple") != normalize_text("a pear")


def test_gold_answers_are_normalised_before_comparison():
    unnormalised = Example("x", "How much?", "1,000", AnswerKind.NUMBER)
    assert grade("The answer is 1000.", unnormalised) == Grade("1000", True)
