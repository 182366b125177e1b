"""The metrics file of a run directory, metrics.jsonl: one JSON object per EM iteration (the
row the loop logged), appended durably; the same JSON-lines format for rationales.jsonl. The
loop, checkpoints, the report, the benchmarks and the tests read and write it through here."""

import json
import os
from pathlib import Path

METRICS_FILE = "metrics.jsonl"

# Columns of the table the loop prints: (metric key, header, number format).
TABLE_COLUMNS = [
    ("iteration", "iter", "d"),
    ("test_accuracy", "test_acc", ".3f"),
    # The paired change against iteration 0 on the same questions, with its 95% interval.
    ("test_accuracy_change", "vs_iter0", "+.3f"),
    ("test_accuracy_change_low", "ci_low", "+.3f"),
    ("test_accuracy_change_high", "ci_high", "+.3f"),
    ("test_unparseable_rate", "no_answer", ".3f"),
    ("test_top_answer_share", "top_ans", ".3f"),
    ("test_answer_kappa", "kappa", ".3f"),
    ("test_maj_at_k", "maj@k", ".3f"),
    ("test_pass_at_k", "pass@k", ".3f"),
    ("acceptance_rate", "accept", ".3f"),
    ("rationales_kept", "kept", "d"),
    ("mean_rationale_tokens", "rat_tok", ".1f"),
    ("tokens_generated", "gen_tok", "d"),
    ("e_step_s", "e_step_s", ".1f"),
    ("m_step_s", "m_step_s", ".1f"),
    ("sync_s", "sync_s", ".2f"),
    ("eval_s", "eval_s", ".1f"),
    ("peak_rss_gib", "peak_gib", ".2f"),
    ("rss_gib", "held_gib", ".2f"),
]


class MalformedRowError(ValueError):
    """A line of a JSON-lines file that is not JSON; the message names the file and line."""


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append JSON lines and make them durable before anything else happens."""
    with path.open("a") as file:
        file.write("".join(json.dumps(row) + "\n" for row in rows))
        file.flush()
        os.fsync(file.fileno())


def read_rows(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file, in file order; [] when it does not exist.
    Raises MalformedRowError naming the file and line of a line that is not JSON."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise MalformedRowError(f"{path}, line {number}: malformed JSON ({error.msg})") from None
    return rows


def read_metrics(run_dir: Path) -> list[dict]:
    """The metrics rows of the run directory run_dir."""
    return read_rows(Path(run_dir) / METRICS_FILE)


def table_header() -> str:
    return "  ".join(f"{header:>9}" for _, header, _ in TABLE_COLUMNS)


def table_row(row: dict) -> str:
    cells = []
    for key, _, number_format in TABLE_COLUMNS:
        value = row.get(key)
        cells.append(f"{'-' if value is None else format(value, number_format):>9}")
    return "  ".join(cells)


# Suffixes of the keys that measure the machine (seconds, memory), not the job's result.
MACHINE_MEASURES = ("_s", "_gib")


def without_timings(rows: list[dict]) -> list[dict]:
    """The rows without their wall-clock timings and memory (keys ending in _s or _gib), for
    comparing two runs of one job: everything else in a row is a function of the seed."""
    return [{key: value for key, value in row.items() if not key.endswith(MACHINE_MEASURES)} for row in rows]
