"""The errors a benchmark can raise while loading. All are ValueErrors whose message says what to fix."""


class DatasetError(ValueError):
    """The data cannot be loaded as configured; the message names the config key to change."""


class DatasetUnavailableError(DatasetError):
    """Neither the local path nor the Hugging Face Hub can provide the data."""


class BadRowError(DatasetError):
    """One row of a data file is malformed."""

    def __init__(self, origin: str, row: int, field: str, problem: str):
        super().__init__(f"{origin}, row {row}, field '{field}': {problem}")
        self.origin = origin
        self.row = row
        self.field = field
