"""Test-time accuracy: greedy decoding from the unhinted prompt on held-out questions."""

from dataclasses import dataclass, field

from emreason.chat import ChatPrompts
from emreason.data.example import Example
from emreason.generation.completion import Generator
from emreason.samplers.base import Proposer, Rationale


@dataclass
class Evaluation:
    # Share of the questions answered correctly.
    accuracy: float
    # Share of the questions answered with no parseable answer (counted as wrong in accuracy).
    unparseable_rate: float
    # Mean answer length in tokens.
    mean_tokens: float
    # Questions whose prompt's middle was cut to fit the engine (generator.on_long_prompt=truncate).
    prompts_truncated: int = 0
    # Questions left unanswered because their prompt was too long (generator.on_long_prompt=skip);
    # counted as wrong in accuracy, not as unparseable.
    questions_skipped: int = 0
    # The graded answers, one per question not skipped.
    rationales: list[Rationale] = field(default_factory=list)


def evaluate(
    generator: Generator, prompts: ChatPrompts, examples: list[Example], max_new_tokens: int
) -> Evaluation:
    answers_per_question = Proposer(generator, prompts, max_new_tokens).propose(
        examples, hint=False, n=1, temperature=0.0
    )
    answers = [answer for answers in answers_per_question for answer in answers]
    count = len(examples)
    return Evaluation(
        accuracy=sum(a.correct for a in answers) / count,
        unparseable_rate=sum(a.answer is None for a in answers) / count,
        mean_tokens=sum(len(a.completion.token_ids) for a in answers) / max(len(answers), 1),
        prompts_truncated=sum(a.prompt_truncated for a in answers),
        questions_skipped=count - len(answers),
        rationales=answers,
    )
