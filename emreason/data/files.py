"""Reading the rows of one local data file: JSON, JSON lines, CSV (with or without a header) and
Parquet. Rows come back as they are; checking them is parsing.py's job."""

import csv
import json
from pathlib import Path
from typing import Any

from emreason.data.config import FileFormat
from emreason.data.errors import DatasetError

_EXTENSIONS = {
    ".json": FileFormat.json,
    ".jsonl": FileFormat.jsonl,
    ".csv": FileFormat.csv,
    ".parquet": FileFormat.parquet,
}


def read_rows(
    path: Path, file_format: FileFormat, csv_columns: list[str] | None, json_records_key: str | None
) -> list[Any]:
    file_format = _resolve_format(path, file_format)
    try:
        if file_format is FileFormat.parquet:
            rows = _read_parquet(path)
        elif file_format is FileFormat.csv:
            rows = _read_csv(path, csv_columns)
        else:
            rows = _read_json(path, file_format, json_records_key)
    except (UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"{path}: cannot be read as {file_format.value} ({error})") from error
    if not rows:
        raise DatasetError(f"{path}: the file has no rows")
    return rows


def _resolve_format(path: Path, file_format: FileFormat) -> FileFormat:
    if file_format is not FileFormat.auto:
        return file_format
    if path.suffix.lower() not in _EXTENSIONS:
        raise DatasetError(
            f"{path}: cannot tell the format from the extension; set dataset.file_format to one of "
            f"{[f.value for f in FileFormat if f is not FileFormat.auto]}"
        )
    return _EXTENSIONS[path.suffix.lower()]


def _read_parquet(path: Path) -> list[Any]:
    import pyarrow.parquet

    try:
        return pyarrow.parquet.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several unrelated types for a damaged file
        raise DatasetError(f"{path}: not a readable Parquet file ({error})") from error


def _read_csv(path: Path, columns: list[str] | None) -> list[Any]:
    # Every value stays a string: "4" as a choice must not turn into the number 4.
    with path.open(newline="", encoding="utf-8-sig") as file:
        if columns is None:
            return list(csv.DictReader(file))
        # A short row lacks its last fields, which parsing then reports as missing.
        return [dict(zip(columns, values, strict=False)) for values in csv.reader(file) if values]


def _read_json(path: Path, file_format: FileFormat, records_key: str | None) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return []
    if file_format is FileFormat.json:
        try:
            return _records(json.loads(text), path, records_key)
        except json.JSONDecodeError as error:
            # Files named .json often hold JSON lines (OpenBookQA's do): one value per line.
            if error.msg != "Extra data":
                raise DatasetError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from error
    return _read_json_lines(path, text)


def _read_json_lines(path: Path, text: str) -> list[Any]:
    rows = []
    for line_number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path}: line {line_number} is not valid JSON ({error.msg})") from error
    return rows


def _records(value: Any, path: Path, records_key: str | None) -> list[Any]:
    if isinstance(value, dict):
        if records_key is None or records_key not in value:
            raise DatasetError(
                f"{path}: the file holds one object; set dataset.json_records_key to the key of its "
                f"list of rows, one of {sorted(value)}"
            )
        value = value[records_key]
    if not isinstance(value, list):
        raise DatasetError(f"{path}: expected a list of rows, found a {type(value).__name__}")
    return value
