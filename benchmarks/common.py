"""What every measurement shares: the default job's config, model, prompts and questions, the
benchmark sizes, and the `name: value` output a script can read."""

import os
from dataclasses import dataclass, replace
from pathlib import Path

from transformers import AutoTokenizer

from emreason.chat import ChatPrompts
from emreason.config import Config, compose_job
from emreason.data.example import Example
from emreason.data.loading import load_benchmark
from emreason.generation.vllm_engine import GeneratorConfig
from emreason.model_store import resolve_model
from emreason.training.m_step import OptimizerConfig

SEED = 0


@dataclass(frozen=True)
class Sizes:
    # Training questions; each gives a hinted and an unhinted prompt (the E-step's prompts).
    questions: int = 16
    # Samples per prompt, and their length cap in tokens.
    samples: int = 4
    max_new_tokens: int = 128
    # Sequences the M-step benchmarks train on (one optimizer step per 8).
    training_sequences: int = 64
    # Overrides of the job whose iteration and memory are measured (the default job).
    job_overrides: tuple[str, ...] = ()
    # The profiled E-step as (hinted prompts, samples each, token cap); None = the default job's
    # own (em.questions_per_iteration, the sampler's samples_per_question, generator.max_new_tokens).
    profiled_e_step: tuple[int, int, int] | None = None


# EMREASON_BENCH_QUICK=1: a smoke run of every measurement in a few minutes.
QUICK = Sizes(
    questions=4,
    samples=2,
    max_new_tokens=32,
    training_sequences=16,
    job_overrides=("experiment=tiny",),
    profiled_e_step=(4, 2, 32),
)


@dataclass
class Setup:
    sizes: Sizes
    model_dir: Path
    tokenizer: object
    prompts: ChatPrompts
    # The default job's training split, in its seeded order.
    train: list[Example]
    # The default job as `emreason` composes it (dtypes resolved).
    job: Config

    @property
    def questions(self) -> list[Example]:
        """The training questions the E-step and M-step benchmarks sample for."""
        return self.train[: self.sizes.questions]

    @property
    def generator(self) -> GeneratorConfig:
        return self.job.generator

    @property
    def optimizer(self) -> OptimizerConfig:
        return self.job.optimizer


def load_setup() -> Setup:
    """The default job's (or EMREASON_BENCH_JOB's) model, generator and optimizer settings (dtypes
    resolved), and its training questions."""
    sizes = QUICK if os.environ.get("EMREASON_BENCH_QUICK") else Sizes()
    # EMREASON_BENCH_JOB="model=smollm2_135m": every figure on that job instead of the default.
    overrides = tuple(os.environ.get("EMREASON_BENCH_JOB", "").split())
    sizes = replace(sizes, job_overrides=overrides + sizes.job_overrides)
    # The job as the command composes it, dtypes resolved (`auto`: bf16 where native, else float32).
    job = compose_job(overrides)
    model_dir = resolve_model(job.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return Setup(
        sizes=sizes,
        model_dir=model_dir,
        tokenizer=tokenizer,
        prompts=ChatPrompts(tokenizer, job.dataset.prompts),
        train=load_benchmark(job.dataset, SEED).train,
        job=job,
    )


def report(name: str, value: float | int) -> None:
    """One figure on its own line, `name: value`."""
    if isinstance(value, float):
        value = f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    print(f"{name}: {value}", flush=True)


def report_target(name: str, value: float, goal: float, unit: str, *, at_least: bool) -> None:
    """`<name>_target: <goal> (met)` or `(missed by <gap>)`."""
    met = value >= goal if at_least else value <= goal
    verdict = "met" if met else f"missed by {abs(value - goal):.2f}{unit}"
    print(f"{name}_target: {'>=' if at_least else '<='} {goal:g}{unit} ({verdict})", flush=True)
