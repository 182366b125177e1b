"""Where results go: metrics.jsonl and rationales.jsonl in the run directory, a printed table,
and Weights & Biases. The W&B run of a run directory is always rebuilt from those two files
when a job starts, so it holds exactly their rows, however often the job was resumed."""

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from collections import defaultdict
from enum import Enum
from pathlib import Path

from emreason.checks import at_least
from emreason.metrics_file import METRICS_FILE, append_rows, read_rows, table_header, table_row
from emreason.samplers.base import Rationale

log = logging.getLogger(__name__)

# The rationales shown in W&B's table, one JSON object (RATIONALE_COLUMNS) per line.
RATIONALES_FILE = "rationales.jsonl"
# Folders of W&B runs inside <run dir>/wandb (offline and online).
WANDB_RUN_FOLDERS = ("offline-run-*", "run-*")

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
    rationale_table_questions: int = field(default=4, metadata=at_least(0))


class Tracker:
    def __init__(
        self,
        run_dir: Path,
        config: LoggerConfig,
        resolved_config: dict,
        *,
        tags: list[str],
        job_type: str,
    ):
        self.config = config
        self.metrics_path = run_dir / METRICS_FILE
        self.rationales_path = run_dir / RATIONALES_FILE
        self.wandb_run = None
        self._header_printed = False
        mode = config.mode
        if mode is WandbMode.online and not os.environ.get("WANDB_API_KEY"):
            log.warning("logger.mode=online but WANDB_API_KEY is not set: logging to W&B offline instead.")
            mode = WandbMode.offline
        if mode is not WandbMode.disabled:
            import wandb

            settings = dict(
                project=config.project,
                entity=config.entity,
                group=config.group,
                job_type=job_type,
                tags=tags,
                config=resolved_config,
                dir=str(run_dir),
                mode=mode.value,
            )
            # One W&B run per run directory, rebuilt from its files at every start.
            run_id = wandb_run_id(run_dir)
            earlier_attempt = remove_wandb_runs(run_dir / "wandb")
            if earlier_attempt and mode is WandbMode.online:
                self.wandb_run = rewound_online_run(settings, run_id)
            if self.wandb_run is None:
                self.wandb_run = wandb.init(**settings, id=run_id, resume="allow")
            self._replay_history()

    def _replay_history(self) -> None:
        """Log the rows a resumed job starts from (the checkpoint's, already restored into the
        run directory) into its fresh W&B run, each at its iteration's step."""
        rationales = defaultdict(list)
        for row in read_rows(self.rationales_path):
            rationales[row["iteration"]].append(row)
        for row in read_rows(self.metrics_path):
            if rationales[row["iteration"]]:
                self._log_rationale_table(row["iteration"], rationales[row["iteration"]])
            self.wandb_run.log(row, step=row["iteration"])

    def log_iteration(self, row: dict) -> None:
        append_rows(self.metrics_path, [row])
        self._print_row(row)
        if self.wandb_run is not None:
            self.wandb_run.log(row, step=row["iteration"])

    def _print_row(self, row: dict) -> None:
        if not self._header_printed:
            print(table_header(), flush=True)
            self._header_printed = True
        print(table_row(row), flush=True)

    def log_rationales(self, iteration: int, proposals: list[Rationale]) -> None:
        """The sampled rationales of the first few questions of this E-step, into
        rationales.jsonl and W&B's rationale table."""
        question_ids = list(dict.fromkeys(r.example.id for r in proposals))
        shown = set(question_ids[: self.config.rationale_table_questions])
        rows = [
            dict(zip(RATIONALE_COLUMNS, [
                iteration, r.example.id, r.example.question, r.example.answer,
                r.completion.text, r.answer, r.correct, r.hinted,
            ]))
            for r in proposals
            if r.example.id in shown
        ]
        append_rows(self.rationales_path, rows)
        if self.wandb_run is not None:
            self._log_rationale_table(iteration, rows)

    def _log_rationale_table(self, iteration: int, rows: list[dict]) -> None:
        import wandb

        table = wandb.Table(columns=RATIONALE_COLUMNS, data=[[row[column] for column in RATIONALE_COLUMNS] for row in rows])
        self.wandb_run.log({"rationales": table}, step=iteration)

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()


def wandb_run_id(run_dir: Path) -> str:
    """One W&B run id per run directory: a resumed job's run replaces the one it left."""
    return hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]


def remove_wandb_runs(wandb_dir: Path) -> bool:
    """Delete the W&B runs an earlier attempt of the job left in wandb_dir (True if there were
    any): they may hold a row of an iteration that is about to be redone, and `wandb sync`
    would upload it. Their rows up to the checkpoint are replayed into the new run from the run
    directory's files."""
    folders = [folder for pattern in WANDB_RUN_FOLDERS for folder in wandb_dir.glob(pattern)]
    for folder in folders:
        log.info("Replacing the W&B run %s of an earlier attempt", folder)
        shutil.rmtree(folder)
    return bool(folders)


def rewound_online_run(settings: dict, run_id: str):
    """The online run of an earlier attempt, rewound to before its first step (W&B's run
    rewinding, `resume_from`), so the replayed history replaces the one it had; None where
    rewinding is not available (a preview feature W&B enables per account): resuming it then
    keeps the steps it already holds, and a redone iteration keeps its first row online."""
    import wandb

    try:
        return wandb.init(**settings, resume_from=f"{run_id}?_step=0")
    except (wandb.errors.Error, ValueError) as error:
        log.warning(
            "Could not rewind the W&B run %s (%s): resuming it instead; W&B keeps the rows it already "
            "holds, so a redone iteration may show its first values online. metrics.jsonl is exact.",
            run_id, error,
        )
        return None
