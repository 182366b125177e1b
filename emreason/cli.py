"""The `emreason` command: a Hydra app that composes conf/ into a job and runs EM."""

import gc
import logging
import os
import signal
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig

from emreason import archive, checkpoint, resident_memory
from emreason.config import CONFIG_DIR, job_config, register_configs
from emreason.em import run_em
from emreason.metrics_file import METRICS_FILE, read_metrics
from emreason.run_dirs import resume_under_multirun
from emreason.tracking import Tracker

log = logging.getLogger(__name__)

register_configs()


def merge_overrides(saved: list[str], new: list[str]) -> list[str]:
    """The saved job's overrides with the new ones applied on top (a new value for a key
    replaces the saved one); `resume=` itself is not part of a job's config."""
    merged = {}
    for override in OverridesParser.create().parse_overrides(saved + new):
        key = (override.key_or_group, override.package)
        merged.pop(key, None)
        merged[key] = override.input_line
    merged.pop(("resume", None), None)
    return list(merged.values())


# Overrides a rerun sweep may add or change for all its jobs: they extend a run or change how it
# is logged, not which job it is.
NOT_THE_JOB = ("em.iterations", "logger.")


def check_same_job(run_dir: Path, found: Path, overrides: list[str]) -> None:
    """A rerun sweep must give each job folder the job whose checkpoint is there: Hydra numbers
    the jobs by the order of the overrides, and another order or list would resume one job's
    checkpoint with another job's config."""

    def the_job(lines: list[str]) -> set[str]:
        parsed = OverridesParser.create().parse_overrides(lines)
        return {o.input_line for o in parsed if not o.key_or_group.startswith(NOT_THE_JOB)}

    saved = checkpoint.load(found).overrides
    if the_job(saved) != the_job(overrides):
        raise SystemExit(
            f"Error: {run_dir} holds the checkpoint of the job `{' '.join(saved)}`, but this sweep's job "
            f"there is `{' '.join(overrides)}`. A sweep continues with the overrides it was started with, "
            "in the same order (they number the jobs); another sweep needs another hydra.sweep.dir."
        )


def config_to_resume(resume_dir: Path, new_overrides: list[str]) -> tuple[DictConfig, list[str]]:
    """The config of the job that wrote resume_dir's checkpoint, composed again from its
    overrides plus this command line's (`emreason resume=DIR em.iterations=4` extends a run)."""
    saved = checkpoint.load(checkpoint.to_resume(resume_dir)).overrides
    overrides = merge_overrides(saved, new_overrides)
    log.info("Resuming %s with overrides %s", resume_dir, overrides)
    return hydra.compose(config_name="config", overrides=overrides), overrides


def exit_on_sigterm(signum, frame) -> None:
    """SIGTERM (kill, a cluster's preemption) unwinds like Ctrl-C, so the vLLM engine
    process is shut down instead of being left running without its parent."""
    raise SystemExit(128 + signum)


def sweep_group(hydra_config) -> str | None:
    """Jobs of one multirun share a W&B group named after the sweep directory."""
    if hydra_config.mode != RunMode.MULTIRUN:
        return None
    return f"{hydra_config.job.name}-{Path(hydra_config.sweep.dir).name}"


def another_nodes_task() -> bool:
    """A job on several SLURM nodes runs this command once per node (srun, submitit); the EM
    job is task 0's, which starts the M-step processes on every node itself."""
    return int(os.environ.get("SLURM_PROCID", "0")) > 0


def objective(run_dir: Path, metric: str) -> float | None:
    """What the job returns, for a sweeper that maximises it (hparams_search=, a grid
    sweep): `metric` of the run's last evaluation, on whatever dataset.test_split names."""
    return read_metrics(run_dir)[-1][metric]


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Run the composed job (or continue it, `resume=`); its objective for a sweeper. The other
    nodes' tasks of a multi-node job return None at once."""
    if another_nodes_task():
        return None
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    overrides = list(hydra_config.overrides.task)
    if cfg.resume is not None and hydra_config.mode == RunMode.MULTIRUN:
        # Reached when hydra.sweep.dir is given too, so sweep_dir_of was not asked.
        raise SystemExit(f"Error: {resume_under_multirun(Path(cfg.resume))}")
    if cfg.resume is not None:
        cfg, overrides = config_to_resume(Path(cfg.resume), overrides)
    group = sweep_group(hydra_config)
    if group is not None and cfg.logger.group is None:
        # Saved with the job's overrides: the job continued alone (`resume=DIR`) keeps its W&B group.
        cfg.logger.group = group
        overrides = [*overrides, f"logger.group='{group}'"]
    if cfg.em.archive and archive.finished(cfg.em.archive, overrides, cfg.em.iterations):
        archive.restore(cfg.em.archive, overrides, run_dir)
        log.info("%s: restored from the archive %s, nothing to run.", run_dir, cfg.em.archive)
        return objective(run_dir, cfg.objective)
    found = checkpoint.latest(run_dir)
    if found is not None and hydra_config.mode == RunMode.MULTIRUN:
        check_same_job(run_dir, found, overrides)
    if found is not None and checkpoint.load(found).iteration >= cfg.em.iterations:
        # A rerun sweep skips its finished jobs.
        log.info("%s has done all %d EM iterations (%s): nothing to run.", run_dir, cfg.em.iterations, found)
        return objective(run_dir, cfg.objective)
    job = job_config(cfg)
    checkpoint.restore_history(run_dir, found)
    tracker = Tracker(
        run_dir,
        job.logger,
        job.as_dict(),
        tags=[f"sampler:{job.sampler.name}", f"dataset:{job.dataset.name}", f"model:{job.model.name}"],
        job_type=job.sampler.name,
    )
    try:
        run_em(job, run_dir, overrides, tracker)
    finally:
        tracker.close()
        # Under a launcher that runs several jobs in one process (hydra/launcher=basic, joblib's
        # reused workers) the next job starts here: hand back what this one freed. The default
        # launcher, process_per_job, gives each job a process of its own (docs/performance.md).
        gc.collect()
        resident_memory.release_freed()
    if job.em.archive:
        log.info("Archived as %s", archive.store(job.em.archive, overrides, run_dir))
    log.info("Metrics: %s", run_dir / METRICS_FILE)
    return objective(run_dir, job.objective)


if __name__ == "__main__":
    main()
