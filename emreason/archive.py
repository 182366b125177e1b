"""A finished job's small results, kept in a folder that outlives the machine (`em.archive`; the
study keeps docs/study/runs in the repository): its metrics rows, config and rationales,
compressed. A job found there is restored into its run directory instead of run again, so a
study stopped with its session continues on a fresh clone, redoing only the jobs not archived.

A job's entry is named by its overrides (those that say which job it is, sorted), so the same
sweep command finds the same entries whatever its sweep directory."""

import gzip
import os
import shutil
import tempfile
from pathlib import Path

from emreason import rationale_log
from emreason.metrics_file import METRICS_FILE, read_metrics

# Files of a run directory an entry keeps besides its rationales.
KEPT = (METRICS_FILE, ".hydra/config.yaml", ".hydra/overrides.yaml")
# Overrides that extend a job or change how it is logged or where it runs, not which job it is.
NOT_THE_JOB = ("em.iterations", "em.archive", "logger.", "hydra.", "resume")


def entry_name(overrides: list[str]) -> str:
    """The entry of the job run with these command-line overrides, e.g.
    `arm=pps,dataset=gsm8k,experiment=study,seed=0`."""
    kept = sorted(o for o in overrides if not o.lstrip("+~").startswith(NOT_THE_JOB))
    return ",".join(kept).replace("/", "_") or "default"


def finished(archive: Path, overrides: list[str], iterations: int) -> bool:
    """Whether the archive holds this job with all its `iterations` done."""
    rows = read_metrics(Path(archive) / entry_name(overrides))
    return bool(rows) and rows[-1]["iteration"] >= iterations


def store(archive: Path, overrides: list[str], run_dir: Path) -> Path:
    """Keep run_dir's metrics, config and rationales (gzip) in the archive, replacing the job's
    entry atomically; returns the entry."""
    entry = Path(archive) / entry_name(overrides)
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}-"))
    try:
        for name in KEPT:
            if (run_dir / name).is_file():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run_dir / name, staging / name)
        (staging / rationale_log.FOLDER).mkdir()
        for path in sorted((run_dir / rationale_log.FOLDER).glob("*.jsonl")):
            with path.open("rb") as source, gzip.open(staging / rationale_log.FOLDER / f"{path.name}.gz", "wb") as kept:
                shutil.copyfileobj(source, kept)
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry


def restore(archive: Path, overrides: list[str], run_dir: Path) -> None:
    """Write the archived job's metrics, config and rationales into run_dir, as the job left
    them (what the report reads; the weights were never kept)."""
    entry = Path(archive) / entry_name(overrides)
    for name in KEPT:
        if (entry / name).is_file():
            (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(entry / name, run_dir / name)
    (run_dir / rationale_log.FOLDER).mkdir(parents=True, exist_ok=True)
    for path in sorted((entry / rationale_log.FOLDER).glob("*.jsonl.gz")):
        with gzip.open(path, "rb") as kept, (run_dir / rationale_log.FOLDER / path.name.removesuffix(".gz")).open("wb") as out:
            shutil.copyfileobj(kept, out)
