"""Cohen's kappa of a job's answers against the gold answers: the collapse-aware score the
study's pilot maximises (a constant answer scores 0 whatever its accuracy)."""

import pytest

from emreason.data.example import AnswerKind, Example
from emreason.evaluation import answer_counts, answer_kappa


def kappa(golds: str, said: str) -> float | None:
    """One letter per question; '-' in said is no answer."""
    examples = [Example(f"q{i}", "?", gold, AnswerKind.LETTER, ("w", "x", "y", "z")) for i, gold in enumerate(golds)]
    answers = [None if s == "-" else s for s in said]
    return answer_kappa(examples, answers, [g == s for g, s in zip(golds, said)])


def test_a_constant_answer_scores_zero_whatever_its_accuracy():
    assert kappa("AAAAAABBCD", "AAAAAAAAAA") == pytest.approx(0.0)


def test_every_answer_right_scores_one_and_a_perfect_swap_scores_minus_one():
    assert kappa("AABB", "AABB") == pytest.approx(1.0)
    assert kappa("AABB", "BBAA") == pytest.approx(-1.0)


def test_a_textbook_table():
    # Two raters, yes/no, 50 items: 20 both yes, 15 both no, 5 and 10 disagreeing.
    # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = (0.7 - 0.5) / 0.5 = 0.4.
    assert kappa("A" * 25 + "B" * 25, "A" * 20 + "B" * 5 + "A" * 10 + "B" * 15) == pytest.approx(0.4)


def test_no_answer_is_one_more_category_that_never_agrees():
    # Observed agreement 2/4; answer marginals A 1/4, B 1/4, none 2/4 -> p_e = 0.25; kappa = 1/3.
    assert kappa("ABAB", "AB--") == pytest.approx(1 / 3)


def test_answers_are_compared_in_the_graders_form():
    numbers = [Example(f"q{i}", "?", gold, AnswerKind.NUMBER) for i, gold in enumerate(["5", "0.5"])]
    assert answer_kappa(numbers, ["5.0", "1/2"], [True, True]) == pytest.approx(1.0)
    # BBH writes True/False and Yes/No; the grader reads yes/no. Always "yes" is a constant answer.
    yes_no = [Example(f"q{i}", "?", gold, AnswerKind.YES_NO) for i, gold in enumerate(["True", "False", "False", "No"])]
    assert answer_kappa(yes_no, ["yes"] * 4, [True, False, False, False]) == pytest.approx(0.0)
    assert answer_kappa(yes_no, ["yes", "no", "no", "no"], [True] * 4) == pytest.approx(1.0)


def test_one_gold_given_always_is_undefined():
    assert kappa("AAA", "AAA") is None


def test_the_commonest_answer_is_counted_in_the_graders_form_with_no_answer_as_one():
    numbers = [Example(f"q{i}", "?", "7", AnswerKind.NUMBER) for i in range(5)]
    counts = answer_counts(numbers, ["5", "5.0", "1,000", None, None])
    assert counts == {"5": 2, "1000": 1, None: 2}
