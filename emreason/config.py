"""The structured config of a job. Hydra checks every YAML file in conf/ against these
dataclasses, so a wrong key or value fails before any model loads, naming the key; then
`check_ranges` checks the numbers types cannot (a learning rate of 0, no iterations)."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from emreason import precision
from emreason.data.config import DatasetConfig
from emreason.generation.vllm_engine import GeneratorConfig
from emreason.model_store import ModelConfig
from emreason.samplers import SAMPLERS
from emreason.tracking import LoggerConfig
from emreason.training.m_step import M_STEP_DTYPES, OptimizerConfig

log = logging.getLogger(__name__)


@dataclass
class EMConfig:
    # EM iterations (E-step, M-step, weight sync, evaluation) after the zero-shot baseline.
    iterations: int = 2
    # Training questions each E-step samples rationales for, walking through a seeded
    # permutation of the training split.
    questions_per_iteration: int = 48
    # k of the sampled evaluation (maj@k, pass@k) logged beside greedy accuracy; 0: greedy only.
    test_samples: int = 0
    # Temperature of those k samples.
    test_temperature: float = 1.0
    # A folder where the zero-shot evaluation is kept per (model, dataset, seed, test set) and
    # reused by the other jobs (experiment=study: the sweep's zero_shot/); null = evaluate.
    zero_shot_cache: str | None = None


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


def created_dir(path: str) -> str:
    """`${emreason.created_dir:PATH}`: PATH, made if missing. The Optuna sweeper opens its sqlite
    file in the sweep folder before Hydra creates that folder."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def register_configs() -> None:
    OmegaConf.register_new_resolver("emreason.created_dir", created_dir, replace=True)
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    store.store(group="dataset", name="base_dataset", node=DatasetConfig)
    store.store(group="model", name="base_model", node=ModelConfig)
    store.store(group="optimizer", name="base_optimizer", node=OptimizerConfig)
    store.store(group="generator", name="base_generator", node=GeneratorConfig)
    store.store(group="logger", name="base_logger", node=LoggerConfig)
    for sampler_config in SAMPLERS:
        store.store(group="sampler", name=f"base_{sampler_config.name}", node=sampler_config)


class ConfigRangeError(ValueError):
    """Config values outside their allowed range; the message names each key, value and range."""


def at_least(low: float) -> tuple[Callable[[float], bool], str]:
    return (lambda value: value >= low), f">= {low}"


def above(low: float) -> tuple[Callable[[float], bool], str]:
    return (lambda value: value > low), f"> {low}"


# Config key -> (test, what is allowed). A key the chosen config lacks (sampler.budget outside
# sampler=rs) and a null value (dataset.test_size=null: all) are not checked.
RANGES = {
    "em.iterations": at_least(1),
    "em.questions_per_iteration": at_least(1),
    "em.test_samples": at_least(0),
    "em.test_temperature": above(0),
    "dataset.train_size": at_least(1),
    "dataset.test_size": at_least(1),
    "sampler.temperature": at_least(0),
    "sampler.budget": at_least(1),
    "sampler.samples_per_question": at_least(1),
    "sampler.rationalization_samples": at_least(1),
    "sampler.init_samples": at_least(1),
    "sampler.subsample_size": at_least(1),
    "sampler.minibatch_size": at_least(1),
    "sampler.steps_per_iteration": at_least(1),
    "sampler.first_m_step_steps": at_least(1),
    "sampler.step_growth": above(0),
    "optimizer.lr": above(0),
    "optimizer.weight_decay": at_least(0),
    "optimizer.epochs": at_least(1),
    "optimizer.batch_size": at_least(1),
    "optimizer.micro_batch_size": at_least(1),
    "optimizer.max_grad_norm": at_least(0),
    "optimizer.processes": at_least(1),
    "optimizer.lora.rank": at_least(1),
    "optimizer.dtype": ((lambda value: value in M_STEP_DTYPES), f"one of {', '.join(M_STEP_DTYPES)}"),
    "generator.max_model_len": at_least(2),
    "generator.max_new_tokens": at_least(1),
    "generator.gpu_memory_utilization": ((lambda value: 0 < value <= 1), "> 0 and <= 1"),
    "generator.cpu_kv_cache_gib": at_least(1),
    "generator.tensor_parallel_size": at_least(1),
    "logger.rationale_table_questions": at_least(0),
}


def check_ranges(cfg: DictConfig) -> None:
    """Raise ConfigRangeError listing every value of cfg outside its range."""
    problems = []
    for key, (allowed, allowed_text) in RANGES.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and not allowed(value):
            problems.append(f"{key}={value} is out of range: allowed {allowed_text}")
    max_new_tokens, max_model_len = cfg.generator.max_new_tokens, cfg.generator.max_model_len
    if max_new_tokens >= max_model_len:
        problems.append(
            f"generator.max_new_tokens={max_new_tokens} is out of range: allowed < "
            f"generator.max_model_len={max_model_len}, leaving room for the prompt"
        )
    if problems:
        raise ConfigRangeError("; ".join(problems))


def resolve_precision(cfg: DictConfig) -> None:
    """Replace `auto` in generator.dtype and optimizer.dtype by the dtype this machine computes
    natively (emreason/precision.py), in place, and log the choice; the job's saved config (in
    every checkpoint and the W&B run) then records what ran."""
    for key in ("generator.dtype", "optimizer.dtype"):
        dtype = OmegaConf.select(cfg, key)
        log.info("%s: %s", key, precision.describe(dtype))
        OmegaConf.update(cfg, key, precision.resolve(dtype))
