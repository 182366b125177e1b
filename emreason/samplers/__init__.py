"""The samplers: one module each, all behind `Sampler.e_step`."""

from emreason.samplers.base import Proposer, Sampler, SamplerConfig
from emreason.samplers.pps import PPSConfig, PromptPosteriorSampler
from emreason.samplers.rs import RejectionSampler, RSConfig
from emreason.samplers.star import STaRConfig, STaRSampler
from emreason.samplers.trice import TRICEConfig, TRICESampler

# Config type -> sampler class. A new sampler is one module, one entry here and one YAML file.
SAMPLERS: dict[type[SamplerConfig], type[Sampler]] = {
    RSConfig: RejectionSampler,
    STaRConfig: STaRSampler,
    PPSConfig: PromptPosteriorSampler,
    TRICEConfig: TRICESampler,
}


def build_sampler(config: SamplerConfig, proposer: Proposer) -> Sampler:
    return SAMPLERS[type(config)](config, proposer)
