"""RS-M: rejection sampling with a budget of M rationales per question from p(z | x)."""

from dataclasses import dataclass, field

from emreason.data.example import Example
from emreason.checks import at_least
from emreason.samplers.base import EStepResult, FilteredSamplerConfig, Sampler, keep_correct


@dataclass
class RSConfig(FilteredSamplerConfig):
    name: str = "rs"
    # The budget M: rationales drawn per question from the unhinted prompt.
    budget: int = field(default=4, metadata=at_least(1))


class RejectionSampler(Sampler):
    config: RSConfig

    def e_step(self, examples: list[Example]) -> EStepResult:
        proposals = self.proposer.propose(
            examples, hint=False, n=self.config.budget, temperature=self.config.temperature
        )
        return keep_correct(proposals, self.config.keep, self.config.derivation_check)
