"""The user turn with and without the hint, per answer kind, and its templates in the config."""

import pytest
from omegaconf import OmegaConf

from emreason.data.config import DatasetConfig, PromptConfig
from emreason.data.example import AnswerKind, Example
from emreason.data.grading import grade
from emreason.data.prompts import user_prompt

ARC = Example("arc-1", "Which is a planet?", "B", AnswerKind.LETTER, ("the Sun", "Mars", "the Moon"))
BBH = Example(
    "hyperbaton/test/1",
    "Which sentence has the correct adjective order:\nOptions:\n(A) old grey sweater\n(B) grey old sweater",
    "A",
    AnswerKind.LETTER,
)
GSM = Example("train/1", "How many clips did Natalia sell altogether?", "72", AnswerKind.NUMBER)
FALLACY = Example("formal_fallacies/test/1", "Is the argument valid or invalid?", "invalid", AnswerKind.TEXT)


def test_unhinted_multiple_choice_lists_the_lettered_choices_and_the_final_sentence():
    assert user_prompt(ARC, PromptConfig(), hint=False) == (
        "Which is a planet?\n(A) the Sun\n(B) Mars\n(C) the Moon\n\n"
        'Think step by step. Then finish with "The answer is (X)." where X is the letter of the correct option.'
    )


@pytest.mark.parametrize(
    ("example", "final"),
    [
        (ARC, '"The answer is (X)."'),
        (BBH, '"The answer is (X)."'),
        (GSM, '"The answer is N."'),
        (FALLACY, '"The answer is TEXT."'),
    ],
)
def test_the_unhinted_prompt_asks_for_the_final_sentence_of_its_kind_and_hides_the_answer(example: Example, final: str):
    prompt = user_prompt(example, PromptConfig(), hint=False)
    assert prompt.startswith(example.question)
    assert final in prompt
    assert f"answer is ({example.answer})" not in prompt and f"answer is {example.answer}" not in prompt


@pytest.mark.parametrize(
    ("example", "hint", "final"),
    [
        (ARC, "The correct answer is (B).", '"The answer is (B)."'),
        (BBH, "The correct answer is (A).", '"The answer is (A)."'),
        (GSM, "The correct answer is 72.", '"The answer is 72."'),
        (FALLACY, "The correct answer is invalid.", '"The answer is invalid."'),
    ],
)
def test_the_hinted_prompt_gives_the_answer_and_asks_to_end_on_it(example: Example, hint: str, final: str):
    prompt = user_prompt(example, PromptConfig(), hint=True)
    assert prompt.startswith(example.question)
    assert hint in prompt and prompt.endswith(final)
    # The sentence the hinted prompt asks for grades as correct.
    assert grade(final.strip('"'), example).correct


def test_bbh_options_stay_inside_the_question_and_are_not_listed_twice():
    assert user_prompt(BBH, PromptConfig(), hint=False).count("(A) old grey sweater") == 1


def test_templates_come_from_the_config():
    cfg = OmegaConf.structured(DatasetConfig)
    cfg.prompts.hinted.number = "Q: {question}\nHint: {answer}"
    assert user_prompt(GSM, cfg.prompts, hint=True) == f"Q: {GSM.question}\nHint: 72"


def test_an_unhinted_template_cannot_leak_the_answer():
    prompts = PromptConfig()
    prompts.unhinted.number = "{question} (it is {answer})"
    with pytest.raises(ValueError, match=r"unhinted number prompt template uses \{answer\}"):
        user_prompt(GSM, prompts, hint=False)
