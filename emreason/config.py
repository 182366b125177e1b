"""The structured config of a job, from Hydra to the EM loop. The dataclasses hold every default
(conf/*.yaml states only what a choice changes) and, beside each field, what it allows
(emreason/checks.py). Hydra checks keys and types as it composes; `OmegaConf.to_object` then
builds the Config, whose __post_init__ checks every value, so a wrong key or value fails before
any model loads, naming the key, the value and what is allowed."""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from emreason import precision, run_dirs
from emreason.checks import above, at_least, one_of, problems_of
from emreason.data.config import DatasetConfig
from emreason.generation.vllm_engine import GeneratorConfig
from emreason.model_store import ModelConfig
from emreason.samplers import SAMPLERS
from emreason.tracking import LoggerConfig
from emreason.training.m_step import OptimizerConfig

log = logging.getLogger(__name__)

# conf/ sits beside the package at the top of the repository (an editable install).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


class ConfigRangeError(ValueError):
    """Config values outside what their fields allow; the message names each key, value and
    what is allowed."""


@dataclass
class EMConfig:
    # EM iterations (E-step, M-step, weight sync, evaluation) after the zero-shot baseline.
    iterations: int = field(default=2, metadata=at_least(1))
    # Training questions each E-step samples rationales for, walking through a seeded
    # permutation of the training split.
    questions_per_iteration: int = field(default=64, metadata=at_least(1))
    # k of the sampled evaluation (maj@k, pass@k) logged beside greedy accuracy; 0: greedy only.
    test_samples: int = field(default=0, metadata=at_least(0))
    # Temperature of those k samples.
    test_temperature: float = field(default=1.0, metadata=above(0))
    # A folder where the zero-shot evaluation is kept per (model, dataset, seed, test set) and
    # reused by the other jobs (experiment=study: the sweep's zero_shot/); null = evaluate.
    zero_shot_cache: str | None = None
    # A folder that outlives the machine where a finished job keeps its metrics, config and
    # rationales (emreason/archive.py); a job found there is restored, not run again
    # (experiment=study: docs/study/runs in the repository). null = keep nothing.
    archive: str | None = None


@dataclass
class Config:
    # Dataset and sampler are typed by their own group schemas (base_<name>).
    dataset: Any = MISSING
    model: ModelConfig = MISSING
    sampler: Any = MISSING
    optimizer: OptimizerConfig = MISSING
    generator: GeneratorConfig = MISSING
    logger: LoggerConfig = MISSING
    em: EMConfig = field(default_factory=EMConfig)
    # Seeds data order, sampling, training and the engine.
    seed: int = 0
    # Folder holding local copies of the benchmarks (dataset configs read ${data_dir}/...).
    data_dir: str = "${oc.env:EMREASON_DATA_DIR,../shared/data}"
    # A run directory to continue after its last checkpoint, with the config it was run with
    # (see emreason/cli.py); null starts a new run.
    resume: str | None = None
    # The metric of the last evaluation a job returns to a sweeper that maximises it
    # (hparams_search=): accuracy, or Cohen's kappa of the answers, which a collapse onto one
    # answer cannot raise (emreason/evaluation.py).
    objective: str = field(default="test_accuracy", metadata=one_of("test_accuracy", "test_answer_kappa"))

    def __post_init__(self):
        problems = problems_of(self)
        if problems:
            raise ConfigRangeError("; ".join(problems))

    def as_dict(self) -> dict:
        """The resolved config as plain data: what checkpoints and the W&B run keep."""
        return OmegaConf.to_container(OmegaConf.structured(self), enum_to_str=True)


def register_configs() -> None:
    """Register the typed configs conf/ composes onto, and the resolvers it calls."""
    run_dirs.register_resolvers()
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    store.store(group="dataset", name="base_dataset", node=DatasetConfig)
    store.store(group="model", name="base_model", node=ModelConfig)
    store.store(group="optimizer", name="base_optimizer", node=OptimizerConfig)
    store.store(group="generator", name="base_generator", node=GeneratorConfig)
    store.store(group="logger", name="base_logger", node=LoggerConfig)
    for sampler_config in SAMPLERS:
        store.store(group="sampler", name=f"base_{sampler_config.name}", node=sampler_config)


def job_config(cfg: DictConfig) -> Config:
    """The composed config as the typed Config the EM loop runs (`auto` dtypes resolved).
    The command and the benchmarks both build their job with it.

    Raises ConfigRangeError naming every problem at once (Config.__post_init__)."""
    resolve_precision(cfg)
    return OmegaConf.to_object(cfg)


def compose_job(overrides: list[str] = ()) -> Config:
    """The job `emreason OVERRIDES...` would run, composed outside the command (benchmarks, tests)."""
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    # Values may name Hydra's own settings (the study's ${hydra:sweep.dir}), as under the command;
    # they resolve against this job's, and the process's Hydra config is put back after.
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    hydra_config.set_config(cfg)
    try:
        with open_dict(cfg):
            del cfg.hydra
        return job_config(cfg)
    finally:
        hydra_config.cfg = previous


def resolve_precision(cfg: DictConfig) -> None:
    """Replace `auto` in generator.dtype and optimizer.dtype by the dtype this machine computes
    natively (emreason/precision.py), in place, and log the choice; the job's saved config (in
    every checkpoint and the W&B run) then records what ran."""
    for key in ("generator.dtype", "optimizer.dtype"):
        dtype = OmegaConf.select(cfg, key)
        log.info("%s: %s", key, precision.describe(dtype))
        OmegaConf.update(cfg, key, precision.resolve(dtype))
