"""Helpers the test files share (test files do not import each other): configs composed as the
command composes them, a tiny model, scripted prompts, signed training sequences, a written
checkpoint, W&B offline runs read back, and benchmark files written and loaded."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow
import pyarrow.parquet
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from emreason import checkpoint
from emreason.chat import EnginePrompt
from emreason.config import CONFIG_DIR, register_configs
from emreason.data.example import AnswerKind, Example
from emreason.data.loading import Benchmark, load_benchmark
from emreason.training.loss import TrainingSequence

WANDB = str(Path(sys.executable).parent / "wandb")


def compose_config(*overrides: str, hydra: bool = False) -> DictConfig:
    """conf/config.yaml composed with the overrides, unchecked (emreason.config.compose_job
    gives the checked, typed job); hydra=True keeps the `hydra` node (sweeper, sweep params)."""
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def tiny_llama(vocab_size: int = 32, max_positions: int = 64, tied: bool = True):
    """A randomly initialised two-layer Llama (seeded), fast enough to train in unit tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=max_positions, tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config)


QUESTIONS = [
    Example("q1", "Which is a mammal?", "B", AnswerKind.LETTER, ("trout", "whale")),
    Example("q2", "Which is a metal?", "A", AnswerKind.LETTER, ("iron", "wood")),
]


class ScriptedPrompts:
    """Prompt text that tells a scripted generator which question and prompt kind it is."""

    def text(self, example, *, hint):
        return f"{example.id}|{'hinted' if hint else 'plain'}"

    def for_engine(self, example, *, hint):
        return EnginePrompt(self.text(example, hint=hint), truncated=False)


# Different lengths, prompts and signed (TRICE-style) weights.
SIGNED_SEQUENCES = [
    TrainingSequence((1, 2, 3), (4, 5), 1.0),
    TrainingSequence((1,), (6, 7, 8, 9, 10, 11), -0.5),
    TrainingSequence((3, 4, 5, 6, 7), (12,), 2.0),
    TrainingSequence((2, 9), (13, 14, 15), 1.0),
    TrainingSequence((8, 8, 8, 8, 8, 8, 8), (16, 17, 18, 19), -1.0),
]


def write_checkpoint(run_dir: Path, iteration: int, overrides=("sampler=pps",)) -> None:
    """A committed checkpoint of `iteration` with its metrics rows (no weights)."""
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"iteration": i}) + "\n" for i in range(iteration + 1)))
    staging = checkpoint.staging_dir(run_dir)
    checkpoint.commit(
        run_dir,
        staging,
        iteration=iteration,
        sampler_state={"memory": {"q1": iteration}},
        config={"seed": 0, "em": {"iterations": iteration}},
        overrides=list(overrides),
    )


def leet_inspect(run_dir: Path, *flags: str) -> str:
    result = subprocess.run(
        [WANDB, "leet", "inspect", "--json", *flags, str(run_dir)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def records(run_dir: Path) -> list[dict]:
    """Every record of a W&B run's .wandb log, one JSON object per line."""
    return [json.loads(line) for line in leet_inspect(run_dir).splitlines() if line.strip()]


def offline_run(job_dir: Path) -> Path:
    """The job's one offline W&B run folder."""
    (run_dir,) = (job_dir / "wandb").glob("offline-run-*")
    return run_dir


DATA_DIR = Path(CONFIG_DIR).parent.parent / "shared" / "data"


def dataset_config(name: str, *overrides: str):
    """conf/dataset/<name>.yaml alone, composed by Hydra onto DatasetConfig; the overrides are
    under dataset."""
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(overrides=[f"+dataset={name}", f"+data_dir={DATA_DIR}", *(f"dataset.{o}" for o in overrides)])
    return cfg.dataset


def load(name: str, *overrides: str, seed: int = 0) -> Benchmark:
    """The benchmark dataset_config(name, *overrides) loads."""
    return load_benchmark(dataset_config(name, *overrides), seed)


def write_rows(path: Path, rows: list) -> Path:
    """rows written to path in the format its extension names (.json, .jsonl, .csv, else parquet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    return path
