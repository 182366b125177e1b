"""The `emreason` command: a Hydra app that composes conf/ into a job and runs EM."""

import logging
import signal
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from emreason.config import register_configs
from emreason.data.config import as_dataset_config
from emreason.em import Job, run_em
from emreason.tracking import Tracker

log = logging.getLogger(__name__)

register_configs()

# conf/ sits beside the package at the top of the repository (an editable install).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def build_job(cfg: DictConfig, run_dir: Path) -> Job:
    return Job(
        dataset=as_dataset_config(cfg.dataset),
        model=OmegaConf.to_object(cfg.model),
        sampler=OmegaConf.to_object(cfg.sampler),
        optimizer=OmegaConf.to_object(cfg.optimizer),
        generator=OmegaConf.to_object(cfg.generator),
        iterations=cfg.em.iterations,
        questions_per_iteration=cfg.em.questions_per_iteration,
        seed=cfg.seed,
        run_dir=run_dir,
    )


def exit_on_sigterm(signum, frame) -> None:
    """SIGTERM (kill, a cluster's preemption) unwinds like Ctrl-C, so the vLLM engine
    process is shut down instead of being left running without its parent."""
    raise SystemExit(128 + signum)


def sweep_group(hydra_config) -> str | None:
    """Jobs of one multirun share a W&B group named after the sweep directory."""
    if hydra_config.mode != RunMode.MULTIRUN:
        return None
    return f"{hydra_config.job.name}-{Path(hydra_config.sweep.dir).name}"


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    job = build_job(cfg, run_dir)
    tracker = Tracker(
        run_dir,
        OmegaConf.to_object(cfg.logger),
        OmegaConf.to_container(cfg, resolve=True),
        group=sweep_group(hydra_config),
        tags=[f"sampler:{job.sampler.name}", f"dataset:{job.dataset.name}", f"model:{job.model.name}"],
        job_type=job.sampler.name,
    )
    try:
        run_em(job, tracker)
    finally:
        tracker.close()
    log.info("Metrics: %s", run_dir / "metrics.jsonl")


if __name__ == "__main__":
    main()
