"""The structured config of a job. Hydra checks every YAML file in conf/ against these
dataclasses, so a wrong key or value fails before any model loads, naming the key."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from emreason.data.config import DatasetConfig
from emreason.generation.vllm_engine import GeneratorConfig
from emreason.model_store import ModelConfig
from emreason.samplers import SAMPLERS
from emreason.tracking import LoggerConfig
from emreason.training.m_step import OptimizerConfig


@dataclass
class EMConfig:
    # EM iterations (E-step, M-step, weight sync, evaluation) after the zero-shot baseline.
    iterations: int = 2
    # Training questions each E-step samples rationales for, walking through a seeded
    # permutation of the training split.
    questions_per_iteration: int = 48


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


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    store.store(group="dataset", name="base_dataset", node=DatasetConfig)
    store.store(group="model", name="base_model", node=ModelConfig)
    store.store(group="optimizer", name="base_optimizer", node=OptimizerConfig)
    store.store(group="generator", name="base_generator", node=GeneratorConfig)
    store.store(group="logger", name="base_logger", node=LoggerConfig)
    for sampler_config in SAMPLERS:
        store.store(group="sampler", name=f"base_{sampler_config.name}", node=sampler_config)
