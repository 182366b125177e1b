"""Sample the completions of the reviewed grading set (tests/reviewed/README.md): for each
benchmark, questions from its validation (or training) questions, answered greedily, sampled at
temperature 1 and from the hinted prompt, by a model folder (the base model, or a checkpoint's
model/ after EM iterations). Written one JSON object a line, without any grade: the reader labels
them blind.

    python tests/reviewed/sample_completions.py --out FILE [--model-dir DIR --tag after_em] [--per-mode 5]
"""

import argparse
import json
import random
from dataclasses import asdict
from pathlib import Path

from transformers import AutoTokenizer

from emreason.chat import ChatPrompts
from emreason.generation.vllm_engine import VLLMGenerator
from emreason.model_store import resolve_model
from emreason.probe import validation_questions

BENCHMARKS = [
    "dataset=gsm8k dataset.test_split=held_out",
    "dataset=arc_easy dataset.test_split=validation",
    "dataset=openbookqa dataset.test_split=dev",
    "dataset=bbh dataset.tasks=[navigate]",
    "dataset=bbh dataset.tasks=[date_understanding]",
    "dataset=bbh dataset.tasks=[web_of_lies]",
    "dataset=bbh dataset.tasks=[object_counting]",
]
# (mode, hinted prompt, temperature)
MODES = [("greedy", False, 0.0), ("sampled", False, 1.0), ("hinted", True, 1.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, help="a trained model folder; default: the default model")
    parser.add_argument("--tag", default="base", help="what the model is, kept in each record")
    parser.add_argument("--per-mode", type=int, default=5, help="questions per benchmark and mode")
    parser.add_argument("--benchmarks", nargs="*", default=BENCHMARKS)
    args = parser.parse_args()
    first, _ = validation_questions(args.benchmarks[0].split(), 1)
    model_dir = args.model_dir or resolve_model(first.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    generator = VLLMGenerator(model_dir, first.generator, seed=0)
    try:
        with args.out.open("a") as out:
            for benchmark in args.benchmarks:
                job, questions = validation_questions(benchmark.split(), 200)
                chosen = random.Random(f"{args.tag}/{benchmark}").sample(questions, len(MODES) * args.per_mode)
                prompts = ChatPrompts(tokenizer, job.dataset.prompts, job.generator)
                for number, (mode, hinted, temperature) in enumerate(MODES):
                    examples = chosen[number * args.per_mode : (number + 1) * args.per_mode]
                    texts = [prompts.for_engine(example, hint=hinted).text for example in examples]
                    completions = generator.generate(
                        texts, n=1, temperature=temperature, max_new_tokens=job.generator.max_new_tokens
                    )
                    for example, (completion,) in zip(examples, completions):
                        record = {
                            "model": args.tag, "benchmark": benchmark, "mode": mode, "example": asdict(example),
                            "completion": completion.text, "finished": completion.finished,
                        }
                        out.write(json.dumps(record) + "\n")
    finally:
        generator.close()


if __name__ == "__main__":
    main()
