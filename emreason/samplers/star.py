"""STaR: rejection sampling from p(z | x), then rationalization with the answer as a hint
for the questions that failed (Zelikman et al. 2022)."""

from dataclasses import dataclass

from emreason.data.example import Example
from emreason.samplers.base import EStepResult, Sampler, SamplerConfig, keep_correct


@dataclass
class STaRConfig(SamplerConfig):
    name: str = "star"
    # Rationales drawn per question from the unhinted prompt (step 1).
    samples_per_question: int = 1
    # Rationales drawn from the hinted prompt for each question step 1 got wrong (step 2).
    rationalization_samples: int = 1
    # Decode greedily in both steps, as the original STaR does (ignores temperature).
    greedy: bool = False
    # Restart the M-step from the base model every EM iteration, as the original STaR does.
    restart_from_base: bool = False


class STaRSampler(Sampler):
    config: STaRConfig

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
        return keep_correct(proposals, self.config.keep)
