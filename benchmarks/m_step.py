"""M-step throughput: emreason's M-step (random steps, each run as length-ordered micro-batches,
the vocabulary projection on completion tokens only) against a plain padded transformers `Trainer` on the same sequences:
accepted rationales given the unhinted prompt, built as the EM loop builds them.

Both count the same real (non-pad) tokens per second; padding waste is the share of pad
tokens in the batches each one runs.
"""

import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

from benchmarks.common import SEED, Setup, report, report_target
from benchmarks.e_step import Sampled, prompt_examples
from emreason.data.grading import grade
from emreason.em import training_sequences
from emreason.samplers.base import Rationale
from emreason.training.loss import TrainingSequence
from emreason.training.m_step import MStepTrainer

# The target: emreason's M-step at least 1.5x the padded Trainer step.
SPEEDUP_TARGET = 1.5


def run(setup: Setup, sampled: Sampled) -> MStepTrainer:
    """Prints the M-step figures; returns emreason's trainer after its M-step."""
    sequences = accepted_sequences(setup, sampled)
    epochs = setup.optimizer.epochs
    real_tokens = epochs * sum(len(s) for s in sequences)
    report("m_step_sequences", len(sequences))
    report("m_step_real_tokens", real_tokens)

    trainer = MStepTrainer(setup.model_dir, setup.optimizer, setup.tokenizer.pad_token_id, SEED)
    started = time.perf_counter()
    stats = trainer.m_step(sequences)
    emreason_s = time.perf_counter() - started
    report("m_step_s_emreason", emreason_s)
    report("m_step_tokens_per_s_emreason", real_tokens / emreason_s)
    report("m_step_padding_waste_pct_emreason", 100 * stats.padding_share)

    baseline_s, baseline_waste = padded_trainer_step(setup, sequences)
    report("m_step_s_hf_trainer", baseline_s)
    report("m_step_tokens_per_s_hf_trainer", real_tokens / baseline_s)
    report("m_step_padding_waste_pct_hf_trainer", baseline_waste)
    report("m_step_speedup_vs_hf_trainer", baseline_s / emreason_s)
    report_target("m_step_speedup_vs_hf_trainer", baseline_s / emreason_s, SPEEDUP_TARGET, "x", at_least=True)
    return trainer


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


class PadCountingCollator:
    """DataCollatorForSeq2Seq that also counts the real and the padded tokens it emits."""

    def __init__(self, tokenizer):
        self.collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        self.real = self.padded = 0

    def __call__(self, features: list[dict]) -> dict:
        batch = self.collate(features)
        self.real += int(batch["attention_mask"].sum())
        self.padded += batch["attention_mask"].numel()
        return batch


def padded_trainer_step(setup: Setup, sequences: list[TrainingSequence]) -> tuple[float, float]:
    """A plain `Trainer` epoch: shuffled, right-padded batches, the loss on completion tokens
    (labels -100 on prompt and padding), the same optimizer settings. (seconds, pad %)"""
    config = setup.optimizer
    setup.tokenizer.padding_side = "right"
    features = [
        {
            "input_ids": list(s.prompt_ids + s.completion_ids),
            "attention_mask": [1] * len(s),
            "labels": [-100] * len(s.prompt_ids) + list(s.completion_ids),
        }
        for s in sequences
    ]
    collator = PadCountingCollator(setup.tokenizer)
    model = AutoModelForCausalLM.from_pretrained(setup.model_dir, dtype=getattr(torch, config.dtype))
    with tempfile.TemporaryDirectory() as output_dir:
        arguments = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=config.batch_size,
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
        )
        trainer = Trainer(model=model, args=arguments, train_dataset=features, data_collator=collator)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    return seconds, 100 * (1 - collator.real / collator.padded)
