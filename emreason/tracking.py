"""Where results go: metrics.jsonl in the run directory, a printed table, and Weights & Biases."""

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from emreason.samplers.base import Rationale

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"

# Columns of the printed table: (metric key, header, number format).
TABLE_COLUMNS = [
    ("iteration", "iter", "d"),
    ("test_accuracy", "test_acc", ".3f"),
    ("test_unparseable_rate", "no_answer", ".3f"),
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
]


RATIONALE_COLUMNS = [
    "iteration", "question_id", "question", "gold", "rationale", "extracted_answer", "correct", "hinted",
]


class WandbMode(str, Enum):
    offline = "offline"  # logs to <run dir>/wandb; `wandb sync` uploads later
    online = "online"  # needs WANDB_API_KEY in the environment
    disabled = "disabled"


@dataclass
class LoggerConfig:
    # W&B mode; offline needs no account.
    mode: WandbMode = WandbMode.offline
    project: str = "emreason"
    # W&B team or user; None = the key's default entity.
    entity: str | None = None
    # Runs of one sweep share a group; None = named from the sweep directory.
    group: str | None = None
    # Questions per EM iteration whose rationales go into the W&B rationale table.
    rationale_table_questions: int = 4


def table_header() -> str:
    return "  ".join(f"{header:>9}" for _, header, _ in TABLE_COLUMNS)


def table_row(row: dict) -> str:
    cells = []
    for key, _, number_format in TABLE_COLUMNS:
        value = row.get(key)
        cells.append(f"{'-' if value is None else format(value, number_format):>9}")
    return "  ".join(cells)


class Tracker:
    def __init__(
        self,
        run_dir: Path,
        config: LoggerConfig,
        resolved_config: dict,
        *,
        group: str | None,
        tags: list[str],
        job_type: str,
    ):
        self.config = config
        self.metrics_path = run_dir / METRICS_FILE
        self.wandb_run = None
        self._header_printed = False
        mode = config.mode
        if mode is WandbMode.online and not os.environ.get("WANDB_API_KEY"):
            log.warning("logger.mode=online but WANDB_API_KEY is not set: logging to W&B offline instead.")
            mode = WandbMode.offline
        if mode is not WandbMode.disabled:
            import wandb

            self.wandb_run = wandb.init(
                project=config.project,
                entity=config.entity,
                group=config.group or group,
                job_type=job_type,
                tags=tags,
                config=resolved_config,
                dir=str(run_dir),
                mode=mode.value,
                # One W&B run per run directory: a resumed job continues its run.
                id=hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16],
                resume="allow",
            )

    def log_iteration(self, row: dict) -> None:
        with self.metrics_path.open("a") as file:
            file.write(json.dumps(row) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self._print_row(row)
        if self.wandb_run is not None:
            self.wandb_run.log(row, step=row["iteration"])

    def _print_row(self, row: dict) -> None:
        if not self._header_printed:
            print(table_header(), flush=True)
            self._header_printed = True
        print(table_row(row), flush=True)

    def log_rationales(self, iteration: int, proposals: list[Rationale]) -> None:
        """A table of sampled rationales for the first few questions of this E-step."""
        if self.wandb_run is None:
            return
        import wandb

        question_ids = list(dict.fromkeys(r.example.id for r in proposals))
        shown = set(question_ids[: self.config.rationale_table_questions])
        table = wandb.Table(columns=RATIONALE_COLUMNS)
        for r in proposals:
            if r.example.id in shown:
                table.add_data(
                    iteration, r.example.id, r.example.question, r.example.answer,
                    r.completion.text, r.answer, r.correct, r.hinted,
                )
        self.wandb_run.log({"rationales": table}, step=iteration)

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
