"""`make bench`: every performance figure of the default job on this machine, one
`name: value` line each, beside its anchor (the hardware's matmul limit, TRL's SFTTrainer,
transformers `generate`). EMREASON_BENCH_QUICK=1 runs them all at smoke-test sizes.

One engine serves the E-step measurements and the in-place weight syncs; the restart, the
LoRA-enabled engine and the engine in the other dtype start after it has stopped, one at a
time, and the default job runs last, alone.
"""

import tempfile
import time
from pathlib import Path

from benchmarks import e_step, e_step_profile, em_iteration, hardware, lora_sync, m_step, m_step_memory, weight_sync
from benchmarks.common import SEED, load_setup, report
from emreason.generation.vllm_engine import VLLMGenerator


def main() -> None:
    started = time.perf_counter()
    setup = load_setup()
    # First, on an idle machine: the anchor of the E-step and M-step figures.
    limits = hardware.run(setup)
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "model"
        engine_started = time.perf_counter()
        engine = VLLMGenerator(setup.model_dir, setup.generator, SEED)
        report("engine_start_s", time.perf_counter() - engine_started)
        try:
            sampled, throughput = e_step.run(setup, engine)
            e_step_profile.run(setup, engine, limits)
            trainer = m_step.run(setup, sampled, limits)
            sync_s = weight_sync.sync_into_running_engine(setup, engine, trainer, weights)
            via_merged = lora_sync.merged(setup, engine, Path(folder))
        finally:
            engine.close()
        del trainer
        weight_sync.restart_engine(setup, weights, sync_s)
        lora_sync.lora_request(setup, Path(folder), via_merged)
    e_step.other_dtypes(setup, throughput, limits)
    m_step_memory.run(setup)
    em_iteration.run(setup)
    report("bench_s", time.perf_counter() - started)


if __name__ == "__main__":
    main()
