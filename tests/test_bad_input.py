"""Every kind of bad input fails early with a message that says what is wrong and what to do,
in one table: each row makes one mistake and lists what the message must say. No row starts
vLLM; the rows that run the `emreason` command fail before any model loads."""

import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import run_emreason
from hydra.errors import ConfigCompositionException
from safetensors.torch import save_file

from emreason.config import ConfigRangeError, compose_job
from emreason.model_store import ModelConfig, ModelNotAvailableError, resolve_model
from emreason.tracking import LoggerConfig, Tracker, WandbMode

QUIZ_ROW = {"question": "What colour is the sky?", "choices": ["red", "green", "blue", "black"], "answer": "C"}


@dataclass
class Row:
    name: str
    # Makes the mistake in a scratch folder (ctx.tmp, ctx.env = monkeypatch, ctx.logs = caplog)
    # and returns what the user is told.
    provoke: Callable[[SimpleNamespace], str]
    # What the message must say.
    says: list[str]


def command_fails(*overrides: str) -> Callable[[SimpleNamespace], str]:
    """Run `emreason`; it must fail, before any model loads (logger disabled: no W&B either)."""

    def provoke(ctx):
        args = [a.format(tmp=ctx.tmp) for a in overrides]
        result = run_emreason("logger.mode=disabled", f"hydra.run.dir={ctx.tmp / 'run'}", *args, timeout=180)
        assert result.returncode != 0
        return result.stderr + result.stdout

    return provoke


def config_fails(*overrides: str) -> Callable[[SimpleNamespace], str]:
    """Compose and check the job's config as the command does, in this process."""

    def provoke(ctx):
        with pytest.raises((ConfigCompositionException, ConfigRangeError)) as error:
            compose_job(list(overrides))
        return f"{error.value} {error.value.__cause__ or ''}"

    return provoke


def data_file(name: str, content: str) -> Callable[[SimpleNamespace], str]:
    """A run on your own quiz file `name` holding `content`."""

    def provoke(ctx):
        (ctx.tmp / name).write_text(content)
        return command_fails(
            "dataset=multiple_choice", f"dataset.local_path={ctx.tmp / name}", "dataset.fields.choices=choices"
        )(ctx)

    return provoke


def model_folder_fails(break_it: Callable[[Path], None]) -> Callable[[SimpleNamespace], str]:
    """A model folder that would load (config, tokenizer, weights), then broken by break_it."""

    def provoke(ctx):
        folder = ctx.tmp / "my-model"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
        (folder / "tokenizer.json").write_text("{}")
        save_file({"embed.weight": torch.zeros(64, 8)}, folder / "model.safetensors")
        break_it(folder)
        return model_fails(path=str(folder))(ctx)

    return provoke


def model_fails(**model) -> Callable[[SimpleNamespace], str]:
    def provoke(ctx):
        ctx.env.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(ModelNotAvailableError) as error:
            resolve_model(ModelConfig(name="my-model", **model))
        return str(error.value)

    return provoke


def truncate_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


def wandb_online_without_a_key(ctx) -> str:
    ctx.env.delenv("WANDB_API_KEY", raising=False)
    tracker = Tracker(ctx.tmp, LoggerConfig(mode=WandbMode.online), {}, tags=[], job_type="test")
    try:
        assert tracker.wandb_run.offline
    finally:
        tracker.close()
    return ctx.logs.text


def disk_full_while_checkpointing(ctx) -> str:
    from emreason.checkpoint import CheckpointWriteError
    from emreason.em import stage_weights

    class FullDisk:
        def save_weights(self, folder):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(CheckpointWriteError) as error:
        stage_weights(ctx.tmp, FullDisk(), tokenizer=None)
    assert not (ctx.tmp / "checkpoint.staging").exists()
    return str(error.value)


ROWS = [
    # Config: choices, keys and types (Hydra and the structured configs).
    Row("unknown group choice", command_fails("sampler=nope", "--cfg", "job"),
        ["Could not find 'sampler/nope'", "Available options in 'sampler'", "pps", "rs", "star", "trice"]),
    Row("unknown preset", command_fails("experiment=tinny", "--cfg", "job"),
        ["Could not find 'experiment/tinny'", "Available options in 'experiment'", "tiny"]),
    Row("unknown key", config_fails("sampler.budgett=3"), ["Key 'budgett' not in", "sampler.budgett"]),
    Row("wrong type", config_fails("sampler=rs", "sampler.budget=many"),
        ["Value 'many' of type 'str' could not be converted to Integer", "sampler.budget"]),
    Row("wrong type, em", config_fails("em.iterations=two"), ["em.iterations", "'two'"]),
    Row("unknown enum value", config_fails("sampler.keep=some"), ["sampler.keep", "expected one of [first, all]"]),
    Row("an option of another sampler", config_fails("sampler=trice", "sampler.keep=all"),
        ["Could not override 'sampler.keep'", "Key 'keep' not in 'TRICEConfig'"]),
    Row("unknown logger mode", config_fails("logger.mode=loud"), ["expected one of [offline, online, disabled]"]),
    Row("unknown long-prompt policy", config_fails("generator.on_long_prompt=cut"), ["expected one of [truncate, skip]"]),
    # Config: ranges (beside each field, checked by Config.__post_init__ before anything loads).
    Row("no EM iterations, from the command", command_fails("em.iterations=0"),
        ["em.iterations=0 is out of range: allowed >= 1"]),
    Row("no questions per iteration", config_fails("em.questions_per_iteration=0"),
        ["em.questions_per_iteration=0 is out of range: allowed >= 1"]),
    Row("zero learning rate", config_fails("optimizer.lr=0"), ["optimizer.lr=0.0 is out of range: allowed > 0"]),
    Row("empty batches", config_fails("optimizer.batch_size=0"), ["optimizer.batch_size=0 is out of range: allowed >= 1"]),
    Row("zero sampling budget", config_fails("sampler=rs", "sampler.budget=0"),
        ["sampler.budget=0 is out of range: allowed >= 1"]),
    Row("no samples per question", config_fails("sampler=pps", "sampler.samples_per_question=0"),
        ["sampler.samples_per_question=0 is out of range: allowed >= 1"]),
    Row("negative temperature", config_fails("sampler.temperature=-0.5"),
        ["sampler.temperature=-0.5 is out of range: allowed >= 0"]),
    Row("no room for the prompt", config_fails("generator.max_new_tokens=2048"),
        ["generator.max_new_tokens=2048 is out of range: allowed < generator.max_model_len=2048"]),
    Row("empty test set", config_fails("dataset.test_size=0"), ["dataset.test_size=0 is out of range: allowed >= 1"]),
    Row("processes not spread evenly over nodes", config_fails("optimizer.processes=3", "optimizer.nodes=2"),
        ["optimizer.processes=3 is out of range: allowed a multiple of optimizer.nodes=2"]),
    Row("unknown M-step launcher", config_fails("optimizer.launcher=ssh"), ["expected one of [local, srun]"]),
    Row("unknown sweep objective", config_fails("objective=test_acc"),
        ["objective=test_acc is out of range: allowed one of test_accuracy, test_answer_kappa"]),
    Row("every problem at once", config_fails("em.iterations=0", "optimizer.epochs=0"),
        ["em.iterations=0 is out of range", "optimizer.epochs=0 is out of range"]),
    # The model.
    Row("missing model folder", model_fails(path="/models/nowhere/Qwen2.5-3B"),
        ["model.path=/models/nowhere/Qwen2.5-3B: no such folder"]),
    Row("hub model while offline", model_fails(path="Qwen/Qwen2.5-3B-Instruct"),
        ["model.path='Qwen/Qwen2.5-3B-Instruct' is neither a local folder nor reachable", "point model.path at the folder"]),
    Row("model folder without config.json", model_folder_fails(lambda f: (f / "config.json").unlink()),
        ["my-model is not a usable model folder: it has no config.json", "set model.path"]),
    Row("model config.json unreadable", model_folder_fails(lambda f: (f / "config.json").write_text('{"model_type": ')),
        ["my-model is not a usable model folder: config.json is not valid JSON"]),
    Row("model without tokenizer", model_folder_fails(lambda f: (f / "tokenizer.json").unlink()),
        ["my-model is not a usable model folder: it has no tokenizer"]),
    Row("model without weights", model_folder_fails(lambda f: (f / "model.safetensors").unlink()),
        ["my-model is not a usable model folder: it has no weights"]),
    Row("model weights truncated", model_folder_fails(truncate_weights),
        ["my-model is not a usable model folder: model.safetensors is truncated"]),
    # The data (the loaders' errors, as the command reports them).
    Row("dataset file missing", command_fails("dataset=multiple_choice", "dataset.local_path={tmp}/quiz.jsonl"),
        ["dataset.local_path=", "quiz.jsonl does not exist"]),
    Row("dataset file empty", data_file("quiz.jsonl", ""), ["quiz.jsonl: the file has no rows"]),
    Row("dataset bad row", data_file("quiz.jsonl", json.dumps(QUIZ_ROW) + "\n" + json.dumps({**QUIZ_ROW, "answer": "E"})),
        ["quiz.jsonl, row 2, field 'answer': 'E' is not among the 4 choices"]),
    # Logging and checkpoints.
    Row("W&B online without a key", wandb_online_without_a_key,
        ["logger.mode=online but WANDB_API_KEY is not set: logging to W&B offline instead"]),
    Row("disk full while checkpointing", disk_full_while_checkpointing,
        ["Could not write the checkpoint", "No space left on device", "Free space"]),
]


@pytest.mark.parametrize("row", [pytest.param(row, id=row.name) for row in ROWS])
def test_bad_input_fails_with_a_message_that_says_what_is_wrong(row: Row, tmp_path: Path, monkeypatch, caplog):
    told = row.provoke(SimpleNamespace(tmp=tmp_path, env=monkeypatch, logs=caplog))
    for fragment in row.says:
        assert fragment in told
