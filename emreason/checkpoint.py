"""A checkpoint after every EM iteration: everything the next iteration needs.

Layout of <run dir>/checkpoint/: model/ (the policy's weights and tokenizer, also what the
vLLM engine loads), the trainer's state (optimizer.pt, trainer_rng.json), sampler.json (e.g.
TRICE's memory) and state.json (the iteration and the global RNG states). It is written into a staging folder, marked complete,
then swapped in by renames, so a crash at any point leaves either the previous checkpoint or the
new one, never a half-written folder that a resume would trust.
"""

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

CHECKPOINT = "checkpoint"
STAGING = "checkpoint.staging"
PREVIOUS = "checkpoint.previous"
COMPLETE = "COMPLETE"


@dataclass
class Resumed:
    # The last EM iteration the checkpoint completed.
    iteration: int
    folder: Path
    sampler_state: dict


def staging_dir(run_dir: Path) -> Path:
    """A fresh folder to write the next checkpoint into (weights first, for the engine)."""
    staging = run_dir / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "model").mkdir(parents=True)
    return staging


def commit(
    run_dir: Path,
    staging: Path,
    *,
    iteration: int,
    sampler_state: dict,
) -> None:
    """Complete the staging folder (the trainer's files are already in it) and swap it in."""
    (staging / "sampler.json").write_text(json.dumps(sampler_state))
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


def load(checkpoint: Path) -> Resumed:
    state = json.loads((checkpoint / "state.json").read_text())
    random.setstate(_tuples(state["python_rng"]))
    torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
    return Resumed(
        iteration=state["iteration"],
        folder=checkpoint,
        sampler_state=json.loads((checkpoint / "sampler.json").read_text()),
    )


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    """random.getstate() is made of tuples; JSON gives lists back."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
