"""The evaluation's own noise floor: greedy answers are not batch-invariant on vLLM (another batch
layout changes the floating-point sums), so the same weights answering the same questions can
differ. This evaluates one model on the study's test questions three ways, in the study's batch,
in reverse order split into batches of 8, and in that batch again after reseeding the engine,
and prints the share of answers and grades that changed and the accuracy of each (docs/study.md
reports it beside every difference).

    python -m benchmarks.noise_floor [--model-dir DIR] [overrides ...]
"""

import argparse
from pathlib import Path

from transformers import AutoTokenizer

from emreason.chat import ChatPrompts
from emreason.config import Config, compose_job
from emreason.data.loading import load_benchmark
from emreason.evaluation import evaluate
from emreason.generation.vllm_engine import VLLMGenerator
from emreason.model_store import resolve_model

from benchmarks.common import report

BATCH = 8
DEFAULT_OVERRIDES = ["experiment=study"]


def compose(overrides: list[str]) -> Config:
    """The job whose model and test questions are evaluated. The study's zero-shot cache lives in
    its sweep folder (${hydra:sweep.dir}), a sweep this evaluation is not part of; it uses none."""
    return compose_job([*overrides, "em.zero_shot_cache=null"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="a trained model folder; default: the job's model")
    parser.add_argument("overrides", nargs="*", default=DEFAULT_OVERRIDES)
    args = parser.parse_args()
    job = compose(args.overrides)
    model_dir = args.model_dir or resolve_model(job.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = ChatPrompts(tokenizer, job.dataset.prompts, job.generator)
    test = load_benchmark(job.dataset, job.seed).test
    generator = VLLMGenerator(model_dir, job.generator, job.seed)
    try:
        one_batch = evaluate(generator, prompts, test, job.generator.max_new_tokens).rationales
        reversed_batches = [
            r
            for start in range(0, len(test), BATCH)
            for r in evaluate(generator, prompts, test[::-1][start : start + BATCH], job.generator.max_new_tokens).rationales
        ][::-1]
        generator.reseed(job.seed + 1)
        reseeded = evaluate(generator, prompts, test, job.generator.max_new_tokens).rationales
    finally:
        generator.close()
    report("noise_floor_questions", len(test))
    for name, other in [("batches_of_8_reversed", reversed_batches), ("reseeded", reseeded)]:
        pairs = list(zip(one_batch, other, strict=True))
        report(f"noise_floor_{name}_text_changed_share", sum(a.completion.text != b.completion.text for a, b in pairs) / len(pairs))
        report(f"noise_floor_{name}_answer_changed_share", sum(a.answer != b.answer for a, b in pairs) / len(pairs))
        report(f"noise_floor_{name}_grade_changed_share", sum(a.correct != b.correct for a, b in pairs) / len(pairs))
        report(f"noise_floor_{name}_accuracy", sum(b.correct for b in other) / len(other))
    report("noise_floor_one_batch_accuracy", sum(a.correct for a in one_batch) / len(one_batch))


if __name__ == "__main__":
    main()
