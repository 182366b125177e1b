"""A checkpoint after every EM iteration: everything the next iteration needs.

Layout of <run dir>/checkpoint/: model/ (the policy's weights and tokenizer, also what the
vLLM engine loads), the trainer's state (trainer/, a sharded torch.distributed.checkpoint, and
trainer_rng.json), sampler.json (e.g. TRICE's memory), metrics.jsonl and rationales.jsonl (the rows logged so far), config.yaml (the resolved config),
overrides.json (the command-line overrides it was composed from) and state.json (the
iteration and the global RNG states). It is written into a staging folder, marked complete,
then swapped in by renames, so a crash at any point leaves either the previous checkpoint or the
new one, never a half-written folder that a resume would trust.
"""

import json
import random
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from emreason.metrics_file import METRICS_FILE
from emreason.tracking import RATIONALES_FILE

CHECKPOINT = "checkpoint"
STAGING = "checkpoint.staging"
PREVIOUS = "checkpoint.previous"
# Every folder a run directory may hold checkpoint files in.
FOLDERS = (CHECKPOINT, STAGING, PREVIOUS)
COMPLETE = "COMPLETE"
# The run directory's row logs; a checkpoint keeps the rows written up to it.
HISTORY_FILES = (METRICS_FILE, RATIONALES_FILE)
OVERRIDES = "overrides.json"


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (typically a full disk); the previous one is still trusted."""

    def __init__(self, run_dir: Path, cause: OSError):
        found = latest(run_dir)
        kept = (
            f"The previous checkpoint {found} (EM iteration {load(found).iteration}) is intact"
            if found
            else "No earlier checkpoint exists"
        )
        super().__init__(
            cause.errno,
            f"Could not write the checkpoint into {run_dir / STAGING}: {cause.strerror or cause}. "
            f"{kept}; the unfinished one was removed. Free space on that disk, then rerun the same "
            f"command in the same run directory, or `emreason resume={run_dir}`, to continue.",
        )


class NothingToResumeError(ValueError):
    """`resume=DIR` names a folder without a complete checkpoint."""


@dataclass
class Resumed:
    # The last EM iteration the checkpoint completed.
    iteration: int
    folder: Path
    sampler_state: dict
    # Command-line overrides of the job that wrote it; `resume=DIR` composes them again.
    overrides: list[str]
    # random.getstate() and torch.get_rng_state() when it was written.
    python_rng: tuple
    torch_rng: torch.Tensor


def staging_dir(run_dir: Path) -> Path:
    """A fresh folder to write the next checkpoint into (weights first, for the engine)."""
    staging = run_dir / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "model").mkdir(parents=True)
    return staging


@contextmanager
def writing(run_dir: Path):
    """Turns a failed write into the staging folder (ENOSPC, a quota) into a
    CheckpointWriteError that says how to resume, and frees the half-written folder."""
    try:
        yield
    except OSError as error:
        shutil.rmtree(run_dir / STAGING, ignore_errors=True)
        raise CheckpointWriteError(run_dir, error) from error


def commit(
    run_dir: Path,
    staging: Path,
    *,
    iteration: int,
    sampler_state: dict,
    config: dict,
    overrides: list[str],
) -> None:
    """Complete the staging folder (the trainer's files are already in it) and swap it in."""
    (staging / "sampler.json").write_text(json.dumps(sampler_state))
    for name in HISTORY_FILES:
        logged = run_dir / name
        (staging / name).write_text(logged.read_text() if logged.exists() else "")
    (staging / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (staging / OVERRIDES).write_text(json.dumps(overrides))
    state = {
        "iteration": iteration,
        "python_rng": _jsonable(random.getstate()),
        "torch_rng": torch.get_rng_state().tolist(),
    }
    (staging / "state.json").write_text(json.dumps(state))
    (staging / COMPLETE).touch()
    current, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
    shutil.rmtree(previous, ignore_errors=True)
    if current.exists():
        current.rename(previous)
    staging.rename(current)
    shutil.rmtree(previous, ignore_errors=True)


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (the previous one if a swap was interrupted)."""
    for name in (CHECKPOINT, PREVIOUS):
        if (run_dir / name / COMPLETE).exists():
            return run_dir / name
    return None


def to_resume(run_dir: Path) -> Path:
    """The checkpoint `resume=run_dir` continues from."""
    found = latest(run_dir)
    if found is None:
        raise NothingToResumeError(
            f"resume={run_dir}: no complete checkpoint in that folder (no {run_dir / CHECKPOINT / COMPLETE}). "
            "Pass the run directory of an earlier job, the folder that holds its metrics.jsonl and checkpoint/."
        )
    return found


def load(checkpoint: Path) -> Resumed:
    state = json.loads((checkpoint / "state.json").read_text())
    return Resumed(
        iteration=state["iteration"],
        folder=checkpoint,
        sampler_state=json.loads((checkpoint / "sampler.json").read_text()),
        overrides=json.loads((checkpoint / OVERRIDES).read_text()),
        python_rng=_tuples(state["python_rng"]),
        torch_rng=torch.tensor(state["torch_rng"], dtype=torch.uint8),
    )


def restore(resumed: Resumed) -> None:
    """Continue exactly where the checkpoint was written: its RNG states."""
    random.setstate(resumed.python_rng)
    torch.set_rng_state(resumed.torch_rng)


def restore_history(run_dir: Path, found: Path | None) -> None:
    """Make the run directory's metrics.jsonl and rationales.jsonl the rows of the checkpoint
    found (none without one). Rows of an iteration that started after it are dropped and the
    iteration is redone, so no row is lost or doubled. A checkpoint written before
    rationales.jsonl existed restores it empty."""
    for name in HISTORY_FILES:
        saved = found / name if found else None
        rewritten = run_dir / f"{name}.restoring"
        rewritten.write_text(saved.read_text() if saved and saved.exists() else "")
        rewritten.replace(run_dir / name)


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    """random.getstate() is made of tuples; JSON gives lists back."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
