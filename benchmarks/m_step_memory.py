"""The M-step's own memory at the longest sequences the default job can train on: one optimizer
step (`optimizer.batch_size` sequences of the longest unhinted training prompt + a full
`generator.max_new_tokens` rationale) for the job's settings and, side by side, without recomputed
activations and with eager attention. Its transient (the peak above the trainer's resident memory
before the step) is what an iteration with long rationales adds to the job's peak, so it bounds
how far the peak can move from one iteration to the next."""

import gc
import random
import time
from dataclasses import replace

from benchmarks.common import SEED, Setup, load_setup, report
from emreason import resident_memory
from emreason.training.loss import TrainingSequence
from emreason.training.m_step import MStepTrainer

# (name, settings) against the job's own.
VARIANTS = {
    "job": {},
    "no_recompute": {"activation_checkpointing": False},
    "no_recompute_eager": {"activation_checkpointing": False, "attention": "eager"},
}


def run(setup: Setup) -> None:
    prompt_tokens = max(len(setup.tokenizer(setup.prompts.text(example, hint=False)).input_ids) for example in setup.train)
    completion_tokens = setup.generator.max_new_tokens
    report("m_step_memory_sequence_tokens", prompt_tokens + completion_tokens)
    sequences = longest_sequences(setup.optimizer.batch_size, prompt_tokens, completion_tokens)
    for name, settings in VARIANTS.items():
        config = replace(setup.optimizer, **settings)
        trainer = MStepTrainer(setup.model_dir, config, setup.tokenizer.pad_token_id, SEED)
        # A first step creates the optimizer's moments, which every later step holds anyway.
        trainer.m_step(sequences[:1])
        resident_memory.release_freed()
        before = resident_memory.current_gib()
        resident_memory.reset_peak()
        started = time.perf_counter()
        trainer.m_step(sequences)
        report(f"m_step_memory_step_s_{name}", time.perf_counter() - started)
        report(f"m_step_memory_transient_gib_{name}", resident_memory.peak_gib() - before)
        del trainer
        gc.collect()
        resident_memory.release_freed()


def longest_sequences(count: int, prompt_tokens: int, completion_tokens: int) -> list[TrainingSequence]:
    """`count` sequences of random ordinary tokens (the M-step's cost does not depend on which)."""
    rng = random.Random(SEED)
    return [
        TrainingSequence(
            tuple(rng.randrange(1000, 20000) for _ in range(prompt_tokens)),
            tuple(rng.randrange(1000, 20000) for _ in range(completion_tokens)),
            1 / (count * completion_tokens),
        )
        for _ in range(count)
    ]


if __name__ == "__main__":
    run(load_setup())
