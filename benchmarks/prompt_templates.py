"""Which prompt template the default model answers best, per answer kind, on validation questions
(issue #27, docs/grading.md): the current template, one asking for the form Qwen already writes
(`\\boxed{}`), and one with a concrete example. Zero-shot greedy answers to the same questions under
each; printed per template: accuracy with its 95% interval, no-answer share, the share of the
commonest answer (a template's example must not become everyone's answer), Cohen's kappa, and the
paired change against the current template with its 95% bootstrap interval.

    python -m benchmarks.prompt_templates [--questions 200] [overrides ...]
"""

import argparse
from dataclasses import replace

from transformers import AutoTokenizer

from emreason.chat import ChatPrompts
from emreason.data.config import PromptConfig
from emreason.evaluation import accuracy_change, evaluate
from emreason.generation.vllm_engine import VLLMGenerator
from emreason.model_store import resolve_model
from emreason.probe import signal, validation_questions

STEP = "{question}\n\nThink step by step. "
# Per answer kind: its validation benchmark and the candidate templates (None: the current one).
CANDIDATES = {
    "number": (
        "dataset=gsm8k dataset.test_split=held_out",
        {
            "current": None,
            "boxed": STEP + "Then put the final number in \\boxed{{}}.",
            "example": STEP + 'Then finish with the final number, for example "The answer is 42."',
        },
    ),
    "letter": (
        "dataset=arc_easy dataset.test_split=validation",
        {
            "current": None,
            "boxed": STEP + "Then put the letter of the correct option in \\boxed{{}}.",
            "example": STEP + 'Then finish with the letter of the correct option, for example "The answer is (B)."',
        },
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200, help="validation questions per answer kind")
    parser.add_argument("overrides", nargs="*", help="overrides for every job, e.g. model=smollm2_135m")
    args = parser.parse_args()
    first, _ = validation_questions([*CANDIDATES["number"][0].split(), *args.overrides], 1)
    model_dir = resolve_model(first.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    generator = VLLMGenerator(model_dir, first.generator, first.seed)
    try:
        for kind, (benchmark, templates) in CANDIDATES.items():
            job, questions = validation_questions([*benchmark.split(), *args.overrides], args.questions)
            baseline = None
            for name, template in templates.items():
                unhinted = job.dataset.prompts.unhinted if template is None else replace(job.dataset.prompts.unhinted, **{kind: template})
                prompts = ChatPrompts(tokenizer, PromptConfig(unhinted, job.dataset.prompts.hinted), job.generator)
                result = evaluate(generator, prompts, questions, job.generator.max_new_tokens)
                change = ""
                if baseline is None:
                    baseline = {r.example.id: r.correct for r in result.rationales}
                else:
                    interval = accuracy_change(questions, baseline, result.rationales)
                    change = f", change vs current {interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"
                print(f"{kind} {name}: {signal(benchmark, result).line()}, commonest answer share "
                      f"{result.top_answer_share:.3f}{change}", flush=True)
    finally:
        generator.close()


if __name__ == "__main__":
    main()
