"""emreason-grade: audit the reward of a run in a minute. For a run directory it re-grades every
stored rationale (rationales/*.jsonl) with the current grader, counts which rule decided per phase
and answer kind, flags grades that differ from the ones the run used, and prints a seeded sample
of rationales with the extracted answer and the verdict.

    emreason-grade outputs/2026-11-30/10-00-00 --sample 20
"""

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

from emreason import rationale_log
from emreason.data.grading import grade

# How much of a completion the sample shows: its end, where the answer is.
_SHOWN_CHARACTERS = 400


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emreason-grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run directory (holds rationales/)")
    parser.add_argument("--sample", type=int, default=12, help="rationales to print (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--phase", choices=["e_step", "evaluation"], help="only this phase")
    args = parser.parse_args(argv)
    try:
        records = rationale_log.read(args.run_dir)
    except FileNotFoundError as error:
        print(f"emreason-grade: {error}", file=sys.stderr)
        return 2
    records = [r for r in records if args.phase in (None, r["phase"])]
    print(audit(records, args.sample, args.seed))
    return 0


def audit(records: list[dict], sample: int, seed: int) -> str:
    """The report as text: rule counts, changed grades, then the sample."""
    rules: Counter[tuple[str, str, str]] = Counter()
    changed = []
    graded = []
    for record in records:
        result = grade(record["completion"], record["example"], record["finished"])
        kind = record["example"].answer_kind.value
        rules[(record["phase"], kind, result.rule)] += 1
        if (result.answer, result.correct) != (record["answer"], record["correct"]):
            changed.append(record)
        graded.append((record, result))
    lines = [f"{len(records)} rationales; which rule decided each grade:", f"{'phase':12} {'kind':8} {'rule':22} count"]
    lines += [f"{phase:12} {kind:8} {rule:22} {count}" for (phase, kind, rule), count in sorted(rules.items())]
    lines.append(f"{len(changed)} grades differ from the ones the run used (graded by an older grader).")
    for record, result in random.Random(seed).sample(graded, min(sample, len(graded))):
        example = record["example"]
        text = record["completion"]
        shown = text if len(text) <= _SHOWN_CHARACTERS else "..." + text[-_SHOWN_CHARACTERS:]
        verdict = "CORRECT" if result.correct else "wrong"
        lines += [
            "",
            f"--- {record['phase']} iteration {record['iteration']} {example.id} "
            f"({'hinted' if record['hinted'] else 'unhinted'}), gold {example.answer!r}",
            shown,
            f">>> extracted {result.answer!r}: {verdict} (rule: {result.rule})",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
