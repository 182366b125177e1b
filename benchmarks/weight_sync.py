"""Weight sync: M-step weights into the running engine (`load_weights`, what the EM loop does)
against starting a new engine on them. Both need the weights on disk first; the EM loop writes
them anyway, into the iteration's checkpoint."""

import time
from pathlib import Path

from benchmarks.common import SEED, Setup, report, report_target
from emreason.generation.vllm_engine import VLLMGenerator
from emreason.training.m_step import MStepTrainer

# Issue 26's target for the Qwen default, in seconds.
SYNC_TARGET_S = 2.0


def sync_into_running_engine(setup: Setup, engine: VLLMGenerator, trainer: MStepTrainer, folder: Path) -> float:
    """Saves the trainer's weights into folder and loads them into the engine; returns the load's seconds."""
    started = time.perf_counter()
    trainer.save_weights(folder)
    setup.tokenizer.save_pretrained(folder)
    report("weight_save_s", time.perf_counter() - started)
    started = time.perf_counter()
    engine.load_weights(folder)
    sync_s = time.perf_counter() - started
    report("weight_sync_s", sync_s)
    report_target("weight_sync_s", sync_s, SYNC_TARGET_S, " s", at_least=False)
    return sync_s


def restart_engine(setup: Setup, folder: Path, sync_s: float) -> None:
    """A new engine on the saved weights, until it is ready to generate (run with no other engine up)."""
    started = time.perf_counter()
    engine = VLLMGenerator(folder, setup.generator, SEED)
    restart_s = time.perf_counter() - started
    engine.close()
    report("engine_restart_s", restart_s)
    report("weight_sync_speedup_vs_restart", restart_s / sync_s)
