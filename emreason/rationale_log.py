"""Every rationale of a run on disk, so that its grades can be audited (emreason-grade) and
re-graded: `rationales/<iteration>-<phase>.jsonl` in the run directory, one JSON object per
rationale with its question, gold answer, completion and grade. A redone iteration (after a
resume) rewrites its files, so each holds one iteration's rationales once."""

import gzip
import json
import os
from dataclasses import asdict
from pathlib import Path

from emreason.data.example import AnswerKind, Example
from emreason.samplers.base import Rationale

FOLDER = "rationales"


def write(run_dir: Path, iteration: int, phase: str, rationales: list[Rationale]) -> Path:
    """Write one phase's rationales ("e_step" or "evaluation") atomically; returns the file."""
    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{iteration:03d}-{phase}.jsonl"
    partial = path.with_suffix(".partial")
    with partial.open("w") as file:
        for r in rationales:
            record = {
                "iteration": iteration,
                "phase": phase,
                "example": asdict(r.example),
                "hinted": r.hinted,
                "completion": r.completion.text,
                "finished": r.completion.finished,
                "answer": r.answer,
                "correct": r.correct,
            }
            file.write(json.dumps(record) + "\n")
    os.replace(partial, path)
    return path


def read(run_dir: Path, iteration: int | None = None, phase: str = "*") -> list[dict]:
    """The records of a run (of one iteration and phase when given), in iteration and phase
    order, each with its Example rebuilt under "example"; files gzipped by the archive
    (emreason/archive.py, `<name>.jsonl.gz`) are read as they are. Raises FileNotFoundError when
    the run has no rationales folder."""
    folder = Path(run_dir) / FOLDER
    if not folder.is_dir():
        raise FileNotFoundError(f"{run_dir} has no {FOLDER}/ folder: it is not an emreason run directory")
    records = []
    pattern = f"{'*' if iteration is None else f'{iteration:03d}'}-{phase}.jsonl"
    for path in sorted([*folder.glob(pattern), *folder.glob(f"{pattern}.gz")]):
        text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        for line in text.splitlines():
            record = json.loads(line)
            fields = record["example"]
            record["example"] = Example(
                fields["id"], fields["question"], fields["answer"], AnswerKind(fields["answer_kind"]),
                tuple(fields["choices"]),
            )
            records.append(record)
    return records
