"""Test-time accuracy: greedy decoding from the unhinted prompt on held-out questions."""

from dataclasses import dataclass

from emreason.chat import ChatPrompts
from emreason.data.example import Example
from emreason.data.grading import grade
from emreason.generation.completion import Generator


@dataclass
class Evaluation:
    accuracy: float
    # Share of answers with no parseable answer (counted as wrong in accuracy).
    unparseable_rate: float
    mean_tokens: float


def evaluate(
    generator: Generator, prompts: ChatPrompts, examples: list[Example], max_new_tokens: int
) -> Evaluation:
    completions = generator.generate(
        [prompts.text(example, hint=False) for example in examples],
        n=1,
        temperature=0.0,
        max_new_tokens=max_new_tokens,
    )
    grades = [grade(samples[0].text, example) for example, samples in zip(examples, completions)]
    count = len(examples)
    return Evaluation(
        accuracy=sum(g.correct for g in grades) / count,
        unparseable_rate=sum(g.answer is None for g in grades) / count,
        mean_tokens=sum(len(samples[0].token_ids) for samples in completions) / count,
    )
