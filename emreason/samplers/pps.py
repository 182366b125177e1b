"""PPS: prompt posterior sampling, rationales from the hinted prompt q(z | x, y*) only."""

from dataclasses import dataclass

from emreason.data.example import Example
from emreason.samplers.base import EStepResult, Sampler, SamplerConfig, keep_correct


@dataclass
class PPSConfig(SamplerConfig):
    name: str = "pps"
    # Rationales drawn per question from the hinted prompt.
    samples_per_question: int = 4


class PromptPosteriorSampler(Sampler):
    config: PPSConfig

    def e_step(self, examples: list[Example]) -> EStepResult:
        proposals = self.proposer.propose(
            examples,
            hint=True,
            n=self.config.samples_per_question,
            temperature=self.config.temperature,
        )
        return keep_correct(proposals, self.config.keep)
