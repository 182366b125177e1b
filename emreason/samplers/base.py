"""What every sampler shares: the rationale type, the E-step result and proposing from vLLM.

A sampler is the proposal q(z | x, y*) of the E-step. It asks the generator for rationales,
grades them against the gold answer and decides which ones the M-step trains on.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum

from emreason.chat import ChatPrompts
from emreason.data.example import Example
from emreason.data.grading import grade
from emreason.generation.completion import Completion, Generator


class Keep(str, Enum):
    first = "first"  # the first correct rationale of each question
    all = "all"  # every correct rationale


@dataclass
class SamplerConfig:
    # Sampler name, shown in logs and used to group runs on the dashboard.
    name: str = "base"
    # Sampling temperature of the proposals.
    temperature: float = 1.0
    # Which correct rationales of a question go to the M-step.
    keep: Keep = Keep.first


@dataclass(frozen=True)
class Rationale:
    example: Example
    completion: Completion
    # The answer extracted from the completion; None when it has none (a wrong answer).
    answer: str | None
    correct: bool
    # True when sampled from the hinted prompt q(z | x, y*).
    hinted: bool
    # Signed weight of this sequence in the M-step loss (1 for the filtered samplers).
    weight: float = 1.0


@dataclass
class EStepResult:
    # Rationales the M-step trains on, each given the UNHINTED prompt.
    accepted: list[Rationale]
    # Every rationale generated in this E-step, accepted or not.
    proposals: list[Rationale] = field(default_factory=list)
    # The sampler's own per-iteration metrics, logged beside the common ones.
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_generated(self) -> int:
        return sum(len(r.completion.token_ids) for r in self.proposals)

    @property
    def acceptance_rate(self) -> float:
        """Share of proposals that reached the gold answer."""
        if not self.proposals:
            return 0.0
        return sum(r.correct for r in self.proposals) / len(self.proposals)


class Proposer:
    """Samples rationales for questions from vLLM and grades them."""

    def __init__(self, generator: Generator, prompts: ChatPrompts, max_new_tokens: int):
        self.generator = generator
        self.prompts = prompts
        self.max_new_tokens = max_new_tokens

    def propose(
        self, examples: list[Example], *, hint: bool, n: int, temperature: float
    ) -> list[list[Rationale]]:
        """n graded rationales per example, from the hinted or the unhinted prompt."""
        if not examples:
            return []
        texts = [self.prompts.text(example, hint=hint) for example in examples]
        completions = self.generator.generate(
            texts, n=n, temperature=temperature, max_new_tokens=self.max_new_tokens
        )
        return [
            [_graded(example, completion, hint) for completion in samples]
            for example, samples in zip(examples, completions)
        ]


def _graded(example: Example, completion: Completion, hinted: bool) -> Rationale:
    result = grade(completion.text, example)
    return Rationale(example, completion, result.answer, result.correct, hinted)


def keep_correct(rationales_per_question: list[list[Rationale]], keep: Keep) -> EStepResult:
    """The filtered E-step: train on correct rationales (weight 1), drop the rest."""
    kept = []
    for rationales in rationales_per_question:
        correct = [r for r in rationales if r.correct]
        kept.extend(correct[:1] if keep is Keep.first else correct)
    proposals = [r for rationales in rationales_per_question for r in rationales]
    return EStepResult(accepted=kept, proposals=proposals)


class Sampler(ABC):
    def __init__(self, config: SamplerConfig, proposer: Proposer):
        self.config = config
        self.proposer = proposer

    @abstractmethod
    def e_step(self, examples: list[Example]) -> EStepResult:
        """Propose rationales for these training questions and choose what the M-step learns."""

    def state_dict(self) -> dict:
        """What the sampler carries from one EM iteration to the next (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned."""
