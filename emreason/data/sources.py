"""Finding the raw rows of one split: in the local files when dataset.local_path is set, otherwise
on the Hugging Face Hub. A split of a benchmark with subsets (MMLU subjects, BBH tasks) comes back
as one Source per subset."""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emreason.data.config import DatasetConfig, Fields
from emreason.data.errors import DatasetError, DatasetUnavailableError
from emreason.data.files import read_rows


@dataclass(frozen=True)
class Source:
    # Where the rows come from, for error messages: a file path or "<hub id>/<subset>:<split>".
    origin: str
    # The subject or task name; None for a benchmark without subsets.
    subset: str | None
    rows: list[Any]
    # The field mapping for these rows (the hub's layout can differ from the local files').
    fields: Fields


def read_split(cfg: DatasetConfig, split: str) -> list[Source]:
    if cfg.local_path is None:
        return _hub_sources(cfg, split)
    return _local_sources(cfg, split)


def _local_sources(cfg: DatasetConfig, split: str) -> list[Source]:
    root = Path(cfg.local_path).expanduser()
    if not root.exists():
        hub = f"dataset.local_path=null to download {cfg.hub_id}" if cfg.hub_id else "data_dir=..."
        raise DatasetUnavailableError(
            f"dataset {cfg.name}: dataset.local_path={cfg.local_path} does not exist "
            f"(looked in {root.absolute()}); point dataset.local_path at the data, or set {hub}"
        )
    if root.is_file():
        return [_read_file(cfg, root, None)]
    files = _split_files(cfg, root, split)
    return [_read_file(cfg, path, subset) for subset, path in files]


def _read_file(cfg: DatasetConfig, path: Path, subset: str | None) -> Source:
    rows = read_rows(path, cfg.file_format, cfg.csv_columns, cfg.json_records_key)
    return Source(str(path), subset, rows, cfg.fields)


def _split_files(cfg: DatasetConfig, root: Path, split: str) -> list[tuple[str | None, Path]]:
    """The (subset, file) pairs of one split, found with the local_files pattern."""
    pattern = cfg.local_files.replace("{split}", split)
    paths = sorted(path for path in root.glob(pattern.replace("{subset}", "*")) if path.is_file())
    if not paths:
        raise DatasetError(
            f"dataset {cfg.name}: no file for split '{split}' matches {root / pattern}; check "
            f"dataset.train_split, dataset.test_split and dataset.local_files "
            f"(the folder holds {sorted(path.name for path in root.iterdir())})"
        )
    if "{subset}" not in pattern:
        if cfg.subsets is not None:
            raise DatasetError(
                f"dataset {cfg.name}: subjects/tasks are set but "
                f"dataset.local_files={cfg.local_files} has no {{subset}}"
            )
        if len(paths) > 1:
            raise DatasetError(
                f"dataset {cfg.name}: several files match {root / pattern}: {[path.name for path in paths]}; "
                "make dataset.local_files name one"
            )
        return [(None, paths[0])]
    found = _by_subset(root, pattern, paths)
    if cfg.subsets is None:
        return sorted(found.items())
    missing = [name for name in cfg.subsets if name not in found]
    if missing:
        raise DatasetError(
            f"dataset {cfg.name}: no data for {missing} in split '{split}' under {root}; "
            f"the subjects/tasks there are {sorted(found)}"
        )
    return [(name, found[name]) for name in cfg.subsets]


def _by_subset(root: Path, pattern: str, paths: list[Path]) -> dict[str, Path]:
    """The files keyed by the part of their path that stands where {subset} is in the pattern."""
    parts = (re.escape(part).replace(r"\*", "[^/]*") for part in pattern.split("{subset}"))
    subset_in_path = re.compile("(?P<subset>[^/]+)".join(parts))
    found = {}
    for path in paths:
        match = subset_in_path.fullmatch(path.relative_to(root).as_posix())
        if match:
            found.setdefault(match.group("subset"), path)
    return found


def _hub_sources(cfg: DatasetConfig, split: str) -> list[Source]:
    if cfg.hub_id is None:
        raise DatasetUnavailableError(
            f"dataset {cfg.name}: no dataset.local_path and no dataset.hub_id; set dataset.local_path=..."
        )
    try:
        import datasets

        if cfg.subsets is not None:
            subsets = cfg.subsets
        elif cfg.hub_config is not None:
            subsets = [None]
        else:
            subsets = datasets.get_dataset_config_names(cfg.hub_id)
        return [
            Source(
                f"{cfg.hub_id}/{subset or cfg.hub_config}:{split}",
                subset,
                datasets.load_dataset(cfg.hub_id, subset or cfg.hub_config, split=split).to_list(),
                cfg.hub_fields or cfg.fields,
            )
            for subset in subsets
        ]
    except Exception as error:  # offline, unknown id, subset or split: all are fixed the same way
        raise DatasetUnavailableError(
            f"dataset {cfg.name}: cannot load {cfg.hub_id} (subset {cfg.hub_config}, split {split}) "
            f"from the Hugging Face Hub: {error}. Without network access, set "
            f"dataset.local_path=... to a local copy"
        ) from error
