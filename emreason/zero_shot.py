"""The zero-shot baseline evaluated once per (model, dataset, seed, test set) and reused by every
arm of a sweep (`em.zero_shot_cache`, set by experiment=study): a cache folder holding, per key,
the iteration-0 evaluation's rationale file and metrics row."""

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from emreason import rationale_log
from emreason.data.example import Example

ROW_FILE = "metrics_row.json"


def cache_key(config: dict, test: list[Example]) -> str:
    """A hash of what decides a zero-shot evaluation: the resolved model, dataset and generator
    configs, the seed and the test questions themselves."""
    decisive = {name: config[name] for name in ("model", "dataset", "generator", "seed")}
    decisive["test"] = [asdict(example) for example in test]
    return hashlib.sha256(json.dumps(decisive, sort_keys=True, default=str).encode()).hexdigest()[:20]


def baseline(cache: Path | None, key: str, run_dir: Path, evaluate: Callable[[], dict]) -> dict:
    """The iteration-0 metrics row. `evaluate` runs the evaluation, writes its rationales into
    run_dir (rationale_log) and returns the row. With a cache holding the key, its rationales are
    copied into run_dir and its row returned (with zero_shot_cached true) instead; else the
    evaluation's are stored under the key, atomically (a second job storing the same key at
    once leaves the first one's copy)."""
    if cache is None:
        return evaluate()
    entry = Path(cache) / key
    if (entry / ROW_FILE).is_file():
        shutil.copytree(entry / rationale_log.FOLDER, Path(run_dir) / rationale_log.FOLDER, dirs_exist_ok=True)
        return {**json.loads((entry / ROW_FILE).read_text()), "zero_shot_cached": True}
    row = evaluate()
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{key}-"))
    # At iteration 0 the run's rationales folder holds the baseline's file only.
    shutil.copytree(Path(run_dir) / rationale_log.FOLDER, staging / rationale_log.FOLDER)
    (staging / ROW_FILE).write_text(json.dumps(row))
    try:
        os.rename(staging, entry)
    except OSError:  # another job stored this key first
        shutil.rmtree(staging)
    return row
