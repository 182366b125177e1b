"""STaR: rejection sampling from p(z | x), then rationalization with the answer as a hint
for the questions that failed (Zelikman et al. 2022)."""

from dataclasses import dataclass, field

from emreason.data.example import Example
from emreason.checks import above, at_least
from emreason.samplers.base import EStepResult, FilteredSamplerConfig, Sampler, ToSequences, keep_correct
from emreason.training.trainer_processes import Trainer


@dataclass
class STaRConfig(FilteredSamplerConfig):
    name: str = "star"
    # Rationales drawn per question from the unhinted prompt (step 1).
    samples_per_question: int = field(default=1, metadata=at_least(1))
    # Rationales drawn from the hinted prompt for each question step 1 got wrong (step 2).
    rationalization_samples: int = field(default=1, metadata=at_least(1))
    # Decode greedily in both steps (ignores temperature).
    greedy: bool = False
    # Restart the M-step from the base model every EM iteration, as the original STaR does.
    restart_from_base: bool = False
    # Sample for the whole training set every EM iteration (the original STaR's outer loop);
    # em.questions_per_iteration is then not used.
    whole_training_set: bool = False
    # Optimizer steps of the first M-step, times step_growth per EM iteration after it (the
    # original STaR: 40, 1.2, int(40 * 1.2^(n-1))); null: optimizer.epochs passes instead.
    first_m_step_steps: int | None = field(default=None, metadata=at_least(1))
    step_growth: float = field(default=1.2, metadata=above(0))


class STaRSampler(Sampler):
    config: STaRConfig

    def __init__(self, config: STaRConfig, proposer):
        super().__init__(config, proposer)
        # M-steps trained so far: the original STaR's outer-iteration count, which sets the next
        # M-step's length. Saved in checkpoints.
        self.m_steps_done = 0

    def e_step(self, examples: list[Example]) -> EStepResult:
        temperature = 0.0 if self.config.greedy else self.config.temperature
        first_tries = self.proposer.propose(
            examples, hint=False, n=self.config.samples_per_question, temperature=temperature
        )
        failed = [ex for ex, tries in zip(examples, first_tries) if not any(r.correct for r in tries)]
        rationalizations = self.proposer.propose(
            failed, hint=True, n=self.config.rationalization_samples, temperature=temperature
        )
        proposals = first_tries + rationalizations
        return keep_correct(proposals, self.config.keep, self.config.derivation_check)

    def questions_per_iteration(self, configured: int, train_size: int) -> int:
        return train_size if self.config.whole_training_set else configured

    def next_m_step_steps(self) -> int | None:
        """Optimizer steps of the next M-step (None: optimizer.epochs passes)."""
        if self.config.first_m_step_steps is None:
            return None
        return int(self.config.first_m_step_steps * self.config.step_growth**self.m_steps_done)

    def train(self, trainer: Trainer, e_step: EStepResult, to_sequences: ToSequences) -> dict[str, float]:
        if self.config.restart_from_base:
            trainer.restart_from_base()
        stats = trainer.m_step(to_sequences(e_step.accepted), self.next_m_step_steps())
        self.m_steps_done += 1
        return stats.metrics()

    def state_dict(self) -> dict:
        return {"m_steps_done": self.m_steps_done}

    def load_state_dict(self, state: dict) -> None:
        self.m_steps_done = state.get("m_steps_done", 0)
