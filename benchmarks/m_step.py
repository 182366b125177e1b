"""M-step throughput and its share of the hardware's limit: emreason's M-step (random steps, each
run as length-ordered micro-batches, the vocabulary projection on completion tokens only) against TRL's `SFTTrainer`
(what users pick for supervised fine-tuning) on the same sequences (accepted rationales given
the unhinted prompt, built as the EM loop builds them), the same completion-only loss and
optimizer settings and the same policy (under LoRA the same adapters on the same frozen base, with
activations recomputed as `optimizer.activation_checkpointing` says), in float32 and in bfloat16
(autocast on both sides). SFTTrainer runs with each padding option that works on a CPU, and its
best one counts: padded batches grouped by length, and best-fit-decreasing packing (padding-free;
transformers masks attention between the packed sequences from their position ids, so no
sequence sees another); each with its default attention (sdpa) and with emreason's
(`optimizer.attention`), if another.

Throughput counts real (non-pad) tokens per second; model FLOPs utilisation (MFU) is that over
the training limit of the same dtype (6 x params FLOP per token, 4 x under LoRA, at the matmul's
GFLOP/s; benchmarks/hardware.py).
"""

import math
import tempfile
import time
from dataclasses import replace

from transformers import AutoModelForCausalLM

from benchmarks.common import SEED, Setup, report, report_target
from benchmarks.e_step import Sampled, prompt_examples
from benchmarks.hardware import DTYPES, Limits
from emreason import precision
from emreason.data.grading import grade
from emreason.em import training_sequences
from emreason.samplers.base import Rationale
from emreason.training.loss import TrainingSequence
from emreason.training import lora
from emreason.training.m_step import MStepTrainer, OptimizerConfig, weights_dtype

# Issue 26's targets for the Qwen default: emreason's M-step at least 1.5x SFTTrainer in the same
# dtype, and at least 60% of the bf16 training limit.
TRL_SPEEDUP_TARGET = 1.5
MFU_TARGET_PCT = 60.0
# SFTTrainer's padding options that run on a CPU (padding-free without packing needs
# FlashAttention): SFTConfig arguments by name.
TRL_OPTIONS = {
    "padded": dict(train_sampling_strategy="group_by_length"),
    "packed": dict(packing=True, packing_strategy="bfd"),
}


def run(setup: Setup, sampled: Sampled, limits: Limits) -> MStepTrainer:
    """Prints the M-step figures in each dtype; returns emreason's trainer in the job's dtype
    after its M-step (the weight-sync benchmark loads its weights)."""
    sequences = accepted_sequences(setup, sampled)
    real_tokens = setup.optimizer.epochs * sum(len(s) for s in sequences)
    report("m_step_sequences", len(sequences))
    report("m_step_real_tokens", real_tokens)
    job_dtype = precision.resolve(setup.optimizer.dtype)
    job_trainer = None
    for dtype, short in DTYPES.items():
        config = replace(setup.optimizer, dtype=dtype)
        trainer = MStepTrainer(setup.model_dir, config, setup.tokenizer.pad_token_id, SEED)
        started = time.perf_counter()
        stats = trainer.m_step(sequences)
        emreason_s = time.perf_counter() - started
        tokens_per_s = real_tokens / emreason_s
        report(f"m_step_s_emreason_{short}", emreason_s)
        report(f"m_step_tokens_per_s_emreason_{short}", tokens_per_s)
        mfu_pct = 100 * tokens_per_s / limits.training_tokens_per_s(dtype, frozen_base=bool(config.lora))
        report(f"m_step_mfu_pct_emreason_{short}", mfu_pct)
        if dtype == "bfloat16":
            report_target("m_step_mfu_pct_emreason_bf16", mfu_pct, MFU_TARGET_PCT, "%", at_least=True)
        if dtype == job_dtype:
            report("m_step_padding_waste_pct_emreason", 100 * stats.padding_share)
            job_trainer = trainer
        del trainer

        # TRL's default attention (sdpa) and emreason's, if another.
        trl_s = {
            f"{option}_{attention}": trl_sft_seconds(setup, sequences, config, option, attention)
            for option in TRL_OPTIONS
            for attention in dict.fromkeys(("sdpa", config.attention))
        }
        for option, seconds in trl_s.items():
            report(f"m_step_tokens_per_s_trl_{option}_{short}", real_tokens / seconds)
        best = min(trl_s, key=trl_s.get)
        report(f"m_step_trl_best_option_{short}", best)
        trl_limit = limits.training_tokens_per_s(dtype, frozen_base=bool(config.lora))
        report(f"m_step_mfu_pct_trl_{short}", 100 * real_tokens / trl_s[best] / trl_limit)
        speedup = trl_s[best] / emreason_s
        report(f"m_step_speedup_vs_trl_{short}", speedup)
        report_target(f"m_step_speedup_vs_trl_{short}", speedup, TRL_SPEEDUP_TARGET, "x", at_least=True)
    return job_trainer


def accepted_sequences(setup: Setup, sampled: Sampled) -> list[TrainingSequence]:
    """The correct samples first, then (when too few are correct) the others."""
    rationales = []
    for (example, hint), completions in zip(prompt_examples(setup), sampled.completions):
        for completion in completions:
            result = grade(completion.text, example)
            rationales.append(Rationale(example, completion, result.answer, result.correct, hint))
    report("m_step_correct_samples", sum(r.correct for r in rationales))
    chosen = sorted(rationales, key=lambda r: not r.correct)[: setup.sizes.training_sequences]
    return training_sequences(chosen, setup.prompts, setup.tokenizer)


def trl_sft_seconds(
    setup: Setup, sequences: list[TrainingSequence], config: OptimizerConfig, option: str, attention: str
) -> float:
    """One SFTTrainer epoch over the sequences (already tokenized, the loss on completion
    tokens), with emreason's optimizer settings, dtype and sequences per optimizer step."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_list([
        {
            "input_ids": list(s.prompt_ids + s.completion_ids),
            "completion_mask": [0] * len(s.prompt_ids) + [1] * len(s.completion_ids),
        }
        for s in sequences
    ])
    if option == "packed":
        # One packed row per optimizer step, as many tokens as emreason's steps hold on average.
        steps = math.ceil(len(sequences) / config.batch_size)
        row = max(max(map(len, sequences)), math.ceil(sum(map(len, sequences)) / steps))
        shape = dict(per_device_train_batch_size=1, max_length=row)
    else:
        shape = dict(per_device_train_batch_size=config.batch_size, max_length=None)
    # The same policy as emreason's: its weights in the same dtype, the same adapters under LoRA.
    model = AutoModelForCausalLM.from_pretrained(setup.model_dir, dtype=weights_dtype(config), attn_implementation=attention)
    if config.lora:
        model = lora.add_adapter(model, config.lora, SEED)
    with tempfile.TemporaryDirectory() as output_dir:
        arguments = SFTConfig(
            output_dir=output_dir,
            completion_only_loss=True,
            bf16=config.dtype == "bfloat16",
            # Recomputed activations, as in emreason's M-step (optimizer.activation_checkpointing).
            gradient_checkpointing=config.activation_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
            learning_rate=config.lr,
            lr_scheduler_type="constant",
            weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm,
            num_train_epochs=config.epochs,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            use_cpu=True,
            seed=SEED,
            **shape,
            **TRL_OPTIONS[option],
        )
        trainer = SFTTrainer(model=model, args=arguments, train_dataset=dataset, processing_class=setup.tokenizer)
        started = time.perf_counter()
        trainer.train()
        return time.perf_counter() - started
