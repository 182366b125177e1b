"""The rationale audit's sample (docs/study.md, "Faithfulness"): 40 correct E-step proposals per arm
(the rationales the M-step trains on) from the archived study jobs of one benchmark, shuffled, and
written for readers blind to arm and hint: two text files of questions, gold answers and
rationales, plus the key that maps each index back to its arm.

    python docs/study/audit/sample.py OUT_DIR [--dataset gsm8k] [--per-arm 40]
"""

import argparse
import gzip
import json
import random
from pathlib import Path

ARMS = ["rs", "star", "pps", "trice", "trice_no_cv"]
RUNS = Path(__file__).resolve().parent.parent / "runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--per-arm", type=int, default=40)
    args = parser.parse_args()
    pool = []
    for arm in ARMS:
        kept = [
            record
            for path in sorted(RUNS.glob(f"arm={arm},dataset={args.dataset},experiment=study,seed=*/rationales/*-e_step.jsonl.gz"))
            for record in map(json.loads, gzip.open(path, "rt"))
            if record["correct"]
        ]
        pool += [(arm, record) for record in random.Random(arm).sample(kept, min(args.per_arm, len(kept)))]
    random.Random(0).shuffle(pool)
    args.out.mkdir(parents=True, exist_ok=True)
    blind = [(args.out / f"blind-{part}.txt").open("w") for part in (1, 2)]
    with (args.out / "key.jsonl").open("w") as key:
        for index, (arm, record) in enumerate(pool):
            example = record["example"]
            key.write(json.dumps({"index": index, "arm": arm, "hinted": record["hinted"], "iteration": record["iteration"],
                                  "id": example["id"], "question": example["question"], "gold": example["answer"],
                                  "completion": record["completion"]}) + "\n")
            blind[index % 2].write(f"=== RATIONALE {index}\nQUESTION:\n{example['question']}\nCORRECT ANSWER: {example['answer']}\n"
                                   f"RATIONALE:\n{record['completion']}\n\n")


if __name__ == "__main__":
    main()
