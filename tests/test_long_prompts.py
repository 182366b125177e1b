"""Prompts longer than the engine allows are truncated or skipped (generator.on_long_prompt) and
counted, with the default model's real tokenizer and a generator that rejects them as vLLM does."""

import pytest
from transformers import AutoTokenizer

from emreason.chat import CUT_MARK, ChatPrompts
from emreason.data.config import PromptConfig
from emreason.data.example import AnswerKind, Example
from emreason import em
from emreason.evaluation import evaluate
from emreason.generation.completion import Completion
from emreason.generation.vllm_engine import GeneratorConfig, LongPrompt
from emreason.samplers import build_sampler
from emreason.samplers.base import Proposer
from emreason.samplers.rs import RSConfig
from emreason.samplers.trice import TRICEConfig

# Room for 200 prompt tokens.
MAX_MODEL_LEN, MAX_NEW_TOKENS = 256, 56
LIMIT = MAX_MODEL_LEN - MAX_NEW_TOKENS

LONG_QUESTION = "Which planet is meant? " + " ".join(f"Clue {i}: it is far away." for i in range(80)) + " Name it."
CHOICES = ("Mercury", "Neptune", "Mars", "Venus")
SHORT = Example("short", "Which planet is red?", "C", AnswerKind.LETTER, CHOICES)
LONG = Example("long", LONG_QUESTION, "B", AnswerKind.LETTER, CHOICES)


@pytest.fixture(scope="module")
def tokenizer(smoke_model_dir):
    return AutoTokenizer.from_pretrained(smoke_model_dir)


def chat_prompts(tokenizer, on_long_prompt=LongPrompt.truncate, max_model_len=MAX_MODEL_LEN):
    generator = GeneratorConfig(
        max_model_len=max_model_len, max_new_tokens=MAX_NEW_TOKENS, on_long_prompt=on_long_prompt
    )
    return ChatPrompts(tokenizer, PromptConfig(), generator)


def length(tokenizer, text):
    return len(tokenizer(text).input_ids)


class LimitedGenerator:
    """Answers every prompt with "(B)", and rejects one that leaves less than max_new_tokens of
    room in max_model_len, as an engine would."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.prompts = []

    def generate(self, prompts, *, n, temperature, max_new_tokens):
        for prompt in prompts:
            if length(self.tokenizer, prompt) + max_new_tokens > MAX_MODEL_LEN:
                raise ValueError(f"prompt of {length(self.tokenizer, prompt)} tokens is too long")
        self.prompts.extend(prompts)
        return [[Completion("So the answer is (B).", (5, 6, 7), True)] * n for _ in prompts]


def test_the_long_question_is_longer_than_the_limit(tokenizer):
    prompts = chat_prompts(tokenizer)
    assert length(tokenizer, prompts.text(SHORT, hint=False)) < LIMIT < length(tokenizer, prompts.text(LONG, hint=False))


def test_a_prompt_within_the_limit_goes_to_the_engine_unchanged(tokenizer):
    prompts = chat_prompts(tokenizer)
    engine_prompt = prompts.for_engine(SHORT, hint=True)
    assert engine_prompt.text == prompts.text(SHORT, hint=True) and not engine_prompt.truncated


@pytest.mark.parametrize("hint", [False, True])
def test_truncation_cuts_the_middle_of_the_question_only(tokenizer, hint):
    prompts = chat_prompts(tokenizer)
    full = prompts.text(LONG, hint=hint)
    engine_prompt = prompts.for_engine(LONG, hint=hint)
    assert engine_prompt.truncated
    text = engine_prompt.text
    assert LIMIT - 10 <= length(tokenizer, text) <= LIMIT
    assert text.count(CUT_MARK) == 1
    # The chat template's start, the question's first and last words, and everything after the
    # question (options, hint, instructions, the assistant turn's opener) are untouched.
    assert text.startswith(full[: full.index("Which planet")] + "Which planet is meant? Clue 0")
    after_question = full[full.index(" Name it.") :]
    assert text.endswith(after_question)
    assert "(B) Neptune" in after_question and after_question.endswith("<|im_start|>assistant\n")
    assert ("The correct answer is (B)" in after_question) == hint


def test_when_the_options_alone_are_too_long_the_middle_of_the_user_turn_is_cut(tokenizer):
    prompts = chat_prompts(tokenizer)
    wordy = Example("wordy", "Pick one.", "A", AnswerKind.LETTER, tuple("very " * 60 + c for c in "ABCD"))
    engine_prompt = prompts.for_engine(wordy, hint=False)
    assert engine_prompt.truncated and length(tokenizer, engine_prompt.text) <= LIMIT
    assert "Pick one." in engine_prompt.text and CUT_MARK in engine_prompt.text
    assert engine_prompt.text.endswith('where X is the letter of the correct option.<|im_end|>\n<|im_start|>assistant\n')


def test_a_prompt_is_skipped_when_asked_or_when_even_the_chat_template_is_too_long(tokenizer):
    assert chat_prompts(tokenizer, LongPrompt.skip).for_engine(LONG, hint=False) is None
    assert chat_prompts(tokenizer, LongPrompt.skip).for_engine(SHORT, hint=False) is not None
    # 20 tokens of room: less than the chat template alone needs.
    assert chat_prompts(tokenizer, max_model_len=MAX_NEW_TOKENS + 20).for_engine(SHORT, hint=False) is None


@pytest.mark.parametrize(
    "on_long_prompt, sent, truncated, skipped", [(LongPrompt.truncate, 2, 1, 0), (LongPrompt.skip, 1, 0, 1)]
)
def test_e_step_sends_only_prompts_that_fit_and_counts_them(tokenizer, on_long_prompt, sent, truncated, skipped, caplog):
    questions = [SHORT, LONG]
    generator = LimitedGenerator(tokenizer)
    proposer = Proposer(generator, chat_prompts(tokenizer, on_long_prompt), MAX_NEW_TOKENS)
    e_step = build_sampler(RSConfig(budget=3), proposer).e_step(questions)
    assert len(generator.prompts) == sent
    # A skipped question gets no rationale; a truncated prompt counts once, not per sample.
    assert len(e_step.proposals) == 3 * sent
    assert f"Prompts too long for the engine (generator.on_long_prompt): {truncated} of 2 truncated, {skipped} skipped" in caplog.text
    evaluation = evaluate(generator, proposer.prompts, questions, MAX_NEW_TOKENS)
    row = em.iteration_metrics(1, questions, e_step, em.test_metrics(evaluation), {})
    assert (row["prompts_truncated"], row["questions_skipped"]) == (truncated, skipped)
    assert (row["test_prompts_truncated"], row["test_questions_skipped"]) == (truncated, skipped)


def test_a_skipped_test_question_counts_as_wrong_not_as_unparseable(tokenizer):
    both_answered_b = [SHORT, LONG]  # gold C and B
    answered = evaluate(LimitedGenerator(tokenizer), chat_prompts(tokenizer), both_answered_b, MAX_NEW_TOKENS)
    assert (answered.accuracy, answered.prompts_truncated, answered.questions_skipped) == (0.5, 1, 0)
    # Both answered B: a collapse onto one answer, which scores the share of B golds.
    assert (answered.top_answer_share, answered.constant_answer_accuracy) == (1.0, 0.5)
    skipped = evaluate(LimitedGenerator(tokenizer), chat_prompts(tokenizer, LongPrompt.skip), both_answered_b, MAX_NEW_TOKENS)
    assert (skipped.accuracy, skipped.unparseable_rate, skipped.questions_skipped) == (0.0, 0.0, 1)
    assert em.test_metrics(skipped)["test_questions_skipped"] == 1


def test_trice_leaves_a_skipped_question_out_of_its_step(tokenizer):
    generator = LimitedGenerator(tokenizer)
    proposer = Proposer(generator, chat_prompts(tokenizer, LongPrompt.skip), MAX_NEW_TOKENS)
    sampler = build_sampler(TRICEConfig(init_samples=2), proposer)
    result = sampler.e_step([SHORT, LONG])
    assert {r.example.id for r in result.proposals} == {"short"}
    assert sampler.seen == {"short", "long"} and "long" not in sampler.memory
