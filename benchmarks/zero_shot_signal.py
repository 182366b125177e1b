"""Which benchmark does the default model have signal on? For each candidate, the zero-shot
greedy answers to training questions (never test ones): accuracy, Cohen's kappa against the
golds (0: answers unrelated to the question), the commonest answer's share and the share with
no answer. docs/study.md chose the study's benchmarks with it.

    python -m benchmarks.zero_shot_signal [--questions 150] [dataset overrides ...]
"""

import argparse
from collections import Counter

from transformers import AutoTokenizer

from emreason.chat import ChatPrompts
from emreason.config import compose_job
from emreason.data.loading import load_benchmark
from emreason.evaluation import evaluate
from emreason.generation.vllm_engine import VLLMGenerator
from emreason.model_store import resolve_model

CANDIDATES = [
    "dataset=arc_easy",
    "dataset=arc_challenge",
    "dataset=openbookqa",
    "dataset=bbh dataset.tasks=[boolean_expressions]",
    "dataset=bbh dataset.tasks=[sports_understanding]",
    "dataset=bbh dataset.tasks=[navigate]",
    "dataset=bbh dataset.tasks=[web_of_lies]",
    "dataset=bbh dataset.tasks=[causal_judgement]",
    "dataset=bbh dataset.tasks=[object_counting]",
    "dataset=gsm8k",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=150)
    parser.add_argument("candidates", nargs="*", default=CANDIDATES, help="dataset overrides, one string each")
    args = parser.parse_args()
    jobs = {candidate: compose_job(candidate.split()) for candidate in args.candidates}
    first = next(iter(jobs.values()))
    model_dir = resolve_model(first.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    generator = VLLMGenerator(model_dir, first.generator, first.seed)
    try:
        for candidate, job in jobs.items():
            questions = load_benchmark(job.dataset, job.seed).train[: args.questions]
            prompts = ChatPrompts(tokenizer, job.dataset.prompts, job.generator)
            result = evaluate(generator, prompts, questions, job.generator.max_new_tokens)
            answers = Counter(r.answer for r in result.rationales if r.answer is not None).most_common(3)
            kappa = "undefined" if result.answer_kappa is None else f"{result.answer_kappa:+.3f}"
            print(
                f"{candidate}: questions {len(questions)}, accuracy {result.accuracy:.3f}, kappa {kappa}, "
                f"best constant {result.constant_answer_accuracy:.3f}, commonest answers {answers}, "
                f"no answer {result.unparseable_rate:.3f}",
                flush=True,
            )
    finally:
        generator.close()


if __name__ == "__main__":
    main()
