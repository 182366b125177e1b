"""The signal probe: does a model answer from the question on a benchmark? Run it before a
study; a model whose answers are unrelated to the question (Cohen's kappa near 0) gives samplers
nothing to amplify, whatever its accuracy (docs/models.md).

    emreason-probe                                   # the default model on the default benchmarks
    emreason-probe model=smollm2_135m --questions 50
    emreason-probe --benchmark "dataset=bbh dataset.tasks=[navigate]" --benchmark "dataset=gsm8k"

For each benchmark, greedy answers to validation questions (ARC-Easy's validation split,
OpenBookQA's dev split, GSM8K's held-out train questions; BBH has none, so its training half): a
test split is never read. Printed per benchmark: accuracy with its 95% Wilson interval, the
constant-answer baseline (always the commonest gold answer), Cohen's kappa, the share with no
answer, the mean rationale length in tokens and the share cut at generator.max_new_tokens.
"""

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from statsmodels.stats.proportion import proportion_confint
from transformers import AutoTokenizer

from emreason.chat import ChatPrompts
from emreason.config import compose_job
from emreason.data.loading import load_benchmark
from emreason.evaluation import Evaluation, evaluate
from emreason.generation.vllm_engine import VLLMGenerator
from emreason.model_store import resolve_model

# Each benchmark as dataset overrides that name its validation questions.
BENCHMARKS = [
    "dataset=gsm8k dataset.test_split=held_out",
    "dataset=arc_easy dataset.test_split=validation",
    "dataset=openbookqa dataset.test_split=dev",
    *(
        f"dataset=bbh dataset.tasks=[{task}]"
        for task in (
            "boolean_expressions", "navigate", "web_of_lies", "sports_understanding", "object_counting",
            "date_understanding", "causal_judgement", "logical_deduction_three_objects",
            "multistep_arithmetic_two",
        )
    ),
]


@dataclass
class Signal:
    """One benchmark's probe result; shares are of `questions`, tokens per rationale."""

    benchmark: str
    questions: int
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    constant_answer_accuracy: float
    kappa: float | None
    no_answer: float
    mean_tokens: float
    cut_at_limit: float

    def line(self) -> str:
        kappa = "undefined" if self.kappa is None else f"{self.kappa:+.3f}"
        return (
            f"{self.benchmark}: n {self.questions}, accuracy {self.accuracy:.3f} "
            f"[{self.accuracy_low:.3f}, {self.accuracy_high:.3f}], constant answer {self.constant_answer_accuracy:.3f}, "
            f"kappa {kappa}, no answer {self.no_answer:.3f}, mean tokens {self.mean_tokens:.0f}, "
            f"cut at the limit {self.cut_at_limit:.3f}"
        )


def signal(benchmark: str, result: Evaluation) -> Signal:
    """The probe's figures of one evaluation (its questions: those it answered and skipped)."""
    count = len(result.rationales) + result.questions_skipped
    correct = round(result.accuracy * count)
    low, high = proportion_confint(correct, count, alpha=0.05, method="wilson")
    return Signal(
        benchmark=benchmark,
        questions=count,
        accuracy=result.accuracy,
        accuracy_low=float(low),
        accuracy_high=float(high),
        constant_answer_accuracy=result.constant_answer_accuracy,
        kappa=result.answer_kappa,
        no_answer=result.unparseable_rate,
        mean_tokens=result.mean_tokens,
        cut_at_limit=sum(not r.completion.finished for r in result.rationales) / count,
    )


def validation_questions(overrides: list[str], questions: int):
    """The job the overrides compose and its first `questions` validation questions: the split
    it evaluates on, or its training questions when that split is the test split. (The job's
    dataset.test_size is set to `questions`: it would otherwise cap them at its own 100.)"""
    job = compose_job([*overrides, f"dataset.test_size={questions}"])
    benchmark = load_benchmark(job.dataset, job.seed)
    pool = benchmark.train if job.dataset.test_split == "test" else benchmark.test
    return job, pool[:questions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", action="append", help="dataset overrides of one benchmark, in one string "
                        "(repeatable; default: GSM8K, ARC-Easy, OpenBookQA and 9 BBH tasks)")
    parser.add_argument("--questions", type=int, default=100, help="validation questions per benchmark")
    parser.add_argument("--out", type=Path, help="also write the results here, one JSON object a line")
    parser.add_argument("overrides", nargs="*", help="overrides for every benchmark, e.g. model=smollm2_135m")
    args = parser.parse_args()
    benchmarks = args.benchmark or BENCHMARKS
    first, _ = validation_questions([*benchmarks[0].split(), *args.overrides], 1)
    model_dir = resolve_model(first.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    generator = VLLMGenerator(model_dir, first.generator, first.seed)
    results = []
    try:
        for benchmark in benchmarks:
            job, questions = validation_questions([*benchmark.split(), *args.overrides], args.questions)
            prompts = ChatPrompts(tokenizer, job.dataset.prompts, job.generator)
            results.append(signal(benchmark, evaluate(generator, prompts, questions, job.generator.max_new_tokens)))
            print(results[-1].line(), flush=True)
            if args.out:
                with args.out.open("a") as out:
                    out.write(json.dumps({"model": first.model.name, **asdict(results[-1])}) + "\n")
    finally:
        generator.close()
    print(markdown_table(first.model.name, results))


def markdown_table(model: str, results: list[Signal]) -> str:
    rows = [
        f"| {r.benchmark} | {r.questions} | {r.accuracy:.3f} [{r.accuracy_low:.3f}, {r.accuracy_high:.3f}] | "
        f"{r.constant_answer_accuracy:.3f} | {'—' if r.kappa is None or math.isnan(r.kappa) else f'{r.kappa:+.3f}'} | "
        f"{r.no_answer:.3f} | {r.mean_tokens:.0f} | {r.cut_at_limit:.3f} |"
        for r in results
    ]
    return "\n".join(
        [
            f"{model}",
            "| benchmark | n | accuracy [95% CI] | constant answer | kappa | no answer | mean tokens | cut at limit |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


if __name__ == "__main__":
    main()
