"""The M-step in 2 processes (FSDP2) against 1, on the default model: seconds and what each
process holds. `python -m benchmarks.m_step_processes` (part of `make bench`).

Both run as trainer processes started by the job (docs/training.md), so the one process is
measured the same way: a replica (parameters, gradients and AdamW moments all in it) against
two shards. On 2 CPU cores two processes cannot be faster; the seconds are for the record.
The sequences are random token ids: the M-step's cost depends on their lengths, not their text.
"""

import random
import time
from dataclasses import replace

from benchmarks.common import SEED, load_setup, report
from emreason.training.data_parallel import TrainerMemory
from emreason.training.loss import TrainingSequence
from emreason.training.trainer_processes import TrainerProcesses

GIB = 2**30


def sequences(vocabulary: int, count: int) -> list[TrainingSequence]:
    draw = random.Random(SEED)
    return [
        TrainingSequence(
            tuple(draw.randrange(vocabulary) for _ in range(draw.randint(120, 180))),
            tuple(draw.randrange(vocabulary) for _ in range(draw.randint(60, 140))),
        )
        for _ in range(count)
    ]


def measure(setup, training: list[TrainingSequence], processes: int) -> tuple[float, list[TrainerMemory]]:
    """Seconds of one M-step in `processes` processes, and each one's memory after it."""
    started = time.perf_counter()
    config = replace(setup.optimizer, processes=processes)
    trainer = TrainerProcesses(setup.model_dir, config, setup.tokenizer.pad_token_id, SEED)
    report(f"m_step_processes_{processes}_start_s", time.perf_counter() - started)
    try:
        started = time.perf_counter()
        trainer.m_step(training)
        seconds = time.perf_counter() - started
        memory = trainer.memory()
    finally:
        trainer.close()
    report(f"m_step_processes_{processes}_s", seconds)
    report(f"m_step_processes_{processes}_training_state_gib_per_process", max(m.training_state for m in memory) / GIB)
    report(f"m_step_processes_{processes}_peak_resident_gib_per_process", max(m.peak_resident for m in memory) / GIB)
    return seconds, memory


def main() -> None:
    setup = load_setup()
    # One optimizer step keeps this at minutes on 2 cores.
    training = sequences(len(setup.tokenizer), setup.optimizer.batch_size)
    one_s, [replica] = measure(setup, training, 1)
    two_s, shards = measure(setup, training, 2)
    report("m_step_processes_2_vs_1_speedup", one_s / two_s)
    report("m_step_processes_2_training_state_share_of_replica", max(m.training_state for m in shards) / replica.training_state)


if __name__ == "__main__":
    main()
