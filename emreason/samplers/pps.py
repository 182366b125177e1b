"""PPS: prompt posterior sampling, rationales from the hinted prompt q(z | x, y*) only."""

from dataclasses import dataclass, field

from emreason.data.example import Example
from emreason.checks import at_least
from emreason.samplers.base import EStepResult, FilteredSamplerConfig, Sampler, keep_correct


@dataclass
class PPSConfig(FilteredSamplerConfig):
    name: str = "pps"
    # Rationales drawn per question from the hinted prompt.
    samples_per_question: int = field(default=4, metadata=at_least(1))


class PromptPosteriorSampler(Sampler):
    config: PPSConfig

    def e_step(self, examples: list[Example]) -> EStepResult:
        proposals = self.proposer.propose(
            examples,
            hint=True,
            n=self.config.samples_per_question,
            temperature=self.config.temperature,
        )
        return keep_correct(proposals, self.config.keep, self.config.derivation_check)
