"""Where a job writes: the resolvers behind hydra.run.dir and hydra.sweep.dir in
conf/config.yaml, which turn `resume=DIR` into that run's folder, or stop with what to run instead."""

import shlex
from pathlib import Path

from omegaconf import OmegaConf

from emreason import checkpoint

# What Hydra writes into a sweep directory: the sweep's config and command-line overrides.
MULTIRUN_FILE = "multirun.yaml"


def run_dir_of(resume: str | None, fresh_dir: str) -> str:
    """hydra.run.dir: the folder being resumed, else a new one. A folder with nothing to
    resume stops the command here, before Hydra creates anything in it (as a plain message:
    Hydra cannot format errors raised while it resolves its own run directory)."""
    if resume is None:
        return fresh_dir
    try:
        checkpoint.to_resume(Path(resume))
    except checkpoint.NothingToResumeError as error:
        raise SystemExit(f"Error: {error}") from error
    return resume


def sweep_dir_of(resume: str | None, fresh_dir: str) -> str:
    """hydra.sweep.dir. `resume=` continues one run and is not swept: under -m it stops the
    command here, before Hydra creates anything, saying what to run instead."""
    if resume is None:
        return fresh_dir
    raise SystemExit(f"Error: {resume_under_multirun(Path(resume))}")


def resume_under_multirun(folder: Path) -> str:
    """Why `resume=folder` cannot run under -m, and the commands that do what was meant: rerun
    the sweep folder is part of, or continue its run alone."""
    message = [f"resume={folder} cannot be used with -m: it continues one run, and a sweep is continued by rerunning it."]
    sweep = next((d for d in (folder, folder.parent) if (d / MULTIRUN_FILE).is_file()), None)
    if sweep is not None:
        message.append(
            f"To continue the sweep {sweep} (finished jobs are skipped, killed ones resume from their "
            f"checkpoints, missing ones start), rerun its command in its sweep directory:\n  {continue_sweep_command(sweep)}"
        )
    if checkpoint.latest(folder) is not None:
        message.append(f"To continue the run {folder} alone, drop -m:\n  emreason resume={folder}")
    if len(message) == 1:
        message.append(f"{folder} is neither a sweep directory (no {MULTIRUN_FILE}) nor a run directory with a complete checkpoint.")
    return "\n".join(message)


def continue_sweep_command(sweep: Path) -> str:
    """The command that ran the sweep in the folder `sweep` (from the multirun.yaml Hydra wrote
    there), pinned to that sweep directory."""
    overrides = OmegaConf.load(sweep / MULTIRUN_FILE).hydra.overrides
    launcher = [o for o in overrides.hydra if not o.startswith(("hydra.sweep.dir=", "hydra.mode="))]
    return shlex.join(["emreason", "-m", *launcher, *overrides.task, f"hydra.sweep.dir={sweep}"])


def register_resolvers() -> None:
    """Register the resolvers conf/config.yaml's hydra.run.dir and hydra.sweep.dir call, for the
    command and for every config composed outside it (emreason.config.compose_job)."""
    for name, resolver in (("emreason.run_dir", run_dir_of), ("emreason.sweep_dir", sweep_dir_of)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
