"""Structured configs of the data layer: where a benchmark lives, how its rows map to an Example,
and the prompt templates. Every conf/dataset/*.yaml is validated against DatasetConfig.

The enum members are lower case so that YAML reads `on_bad_row: skip`: OmegaConf matches an enum
value by member name and lists the names when it rejects one.
"""

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from omegaconf import MISSING, DictConfig, OmegaConf

from emreason.checks import Checked, allowed, at_least, problems_of
from emreason.data.errors import DatasetError


# test_split's name for the train questions that validation_from_train sets aside.
HELD_OUT = "held_out"


class OnBadRow(str, Enum):
    error = "error"  # stop at the first malformed row, naming file, row and field
    skip = "skip"  # leave the row out, log it and count it in Benchmark.skipped_rows


class FileFormat(str, Enum):
    auto = "auto"  # from the extension; a .json file may hold one JSON value or JSON lines
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


class AnswerKey(str, Enum):
    """How a multiple-choice row names its correct choice."""

    letter = "letter"  # "B" or "(B)"
    index = "index"  # 0-based position in the choices: 1 or "1" means B
    label = "label"  # one of the labels in Fields.choice_labels (ARC uses "A".."D" and "1".."4")
    text = "text"  # the text of the correct choice


class AnswerKindSetting(str, Enum):
    """The answer kind of a benchmark's examples."""

    # Per subset: letter when there are choices; yes_no when every answer is yes/no or true/false
    # (words or JSON booleans); else the kind most answers have ("(A)"-style letters, numbers, or
    # text); rows of another kind then fail as bad rows.
    auto = "auto"
    letter = "letter"
    number = "number"
    yes_no = "yes_no"
    text = "text"


@dataclass
class Fields:
    """Which fields of a row hold what. Dotted names reach into nested objects ("choices.text")."""

    # Field with the question text.
    question: str = "question"
    # Field with the answer: a choice (see answer_key) for multiple choice, else the short answer.
    answer: str = "answer"
    # How the answer field names the correct choice; multiple choice only.
    answer_key: AnswerKey = AnswerKey.letter
    # Regex searched in the answer field whose first group is the answer, e.g. GSM8K's
    # "####\\s*(.+?)\\s*$"; null = the whole field.
    answer_pattern: str | None = None
    # Field with the list of choice texts, e.g. "choices" or "choices.text"; null = see choice_columns.
    choices: str | None = None
    # Fields with one choice text each, in letter order, e.g. [A, B, C, D]; used when choices is null.
    # Both empty: a short-answer benchmark (or one whose options are written inside the question).
    choice_columns: list[str] = field(default_factory=list)
    # Field with the labels of the choices, needed by answer_key=label, e.g. "choices.label".
    choice_labels: str | None = None
    # Field with a unique row id; null = "<split>/<row number>". Prefixed with "<subset>/" when
    # the benchmark has subsets (MMLU subjects, BBH tasks).
    id: str | None = None

    @property
    def has_choices(self) -> bool:
        return self.choices is not None or bool(self.choice_columns)


@dataclass
class PromptTemplates:
    """One user-turn template per answer kind. {question} is the question followed by its lettered
    options, one per line; {answer} is the correct answer (hinted templates only)."""

    # Multiple choice: the answer is a letter.
    letter: str
    # The answer is a number.
    number: str
    # The answer is yes or no; {yes} and {no} are the data set's words ("Yes"/"No" or "True"/"False").
    yes_no: str
    # The answer is free text.
    text: str


@dataclass
class PromptConfig:
    # The user turn of p(z | x): what the model sees when it is trained and evaluated.
    unhinted: PromptTemplates = field(
        default_factory=lambda: PromptTemplates(
            letter='{question}\n\nThink step by step. Then finish with "The answer is (X)." '
            "where X is the letter of the correct option.",
            number='{question}\n\nThink step by step. Then finish with "The answer is N." where N is the final number.',
            yes_no='{question}\n\nThink step by step. Then finish with "The answer is {yes}." or "The answer is {no}."',
            text='{question}\n\nThink step by step. Then finish with "The answer is TEXT." '
            "where TEXT is your final answer.",
        )
    )
    # The user turn of the proposal q(z | x, y*) (PPS, STaR rationalization, TRICE's memory
    # initialisation): the correct answer is given as a hint and the model explains it.
    hinted: PromptTemplates = field(
        default_factory=lambda: PromptTemplates(
            letter="{question}\n\nThe correct answer is ({answer}). Explain step by step why. "
            'Then finish with "The answer is ({answer})."',
            number="{question}\n\nThe correct answer is {answer}. Explain step by step how to get it. "
            'Then finish with "The answer is {answer}."',
            yes_no="{question}\n\nThe correct answer is {answer}. Explain step by step why. "
            'Then finish with "The answer is {answer}."',
            text="{question}\n\nThe correct answer is {answer}. Explain step by step why. "
            'Then finish with "The answer is {answer}."',
        )
    )


@dataclass
class DatasetConfig(Checked):
    # Short name of the benchmark, used in logs, errors and run names, e.g. "arc_easy".
    name: str = MISSING
    # Hugging Face Hub dataset id, read with datasets.load_dataset when local_path is null.
    hub_id: str | None = None
    # The hub dataset's subset (configuration), e.g. "ARC-Easy"; null = every subset it has.
    hub_config: str | None = None
    # A local file or folder with the data, read instead of the hub; relative to the launch
    # directory. A folder holds one file per split (see local_files); a single file is one split.
    local_path: str | None = None
    # Inside a local folder, the file(s) of one split: {split} is the split name, {subset} a
    # subject or task name, * any text, e.g. "{split}/{subset}_{split}.csv" for MMLU.
    local_files: str = "{split}.*"
    # Format of the local files.
    file_format: FileFormat = FileFormat.auto
    # Column names of a headerless CSV file (MMLU); null = the first row is the header.
    csv_columns: list[str] | None = None
    # For a JSON file holding one object: the key whose value is the list of rows (BBH: "examples").
    json_records_key: str | None = None
    # Split to train on; null = the benchmark has no train split, and a seeded share of the test
    # split (train_fraction of each subset's questions) becomes the train set.
    train_split: str | None = "train"
    # Split to evaluate on; `held_out` = the train questions validation_from_train set aside (a
    # validation split for a benchmark without one, GSM8K).
    test_split: str = "test"
    # Questions of the train split set aside (a split_seed shuffle) as the `held_out` split: no
    # E-step ever draws them, whichever split a job evaluates on.
    validation_from_train: int = field(default=0, metadata=at_least(0))
    # With train_split null: the share of each subset's questions that goes to the train set.
    train_fraction: float = field(default=0.5, metadata=allowed(lambda share: 0 < share < 1, "> 0 and < 1"))
    # Seed of that train/test division, apart from the run seed so all runs share one test set.
    split_seed: int = 0
    # Training examples to sample with the run seed; null = all.
    train_size: int | None = field(default=None, metadata=at_least(1))
    # Test examples to sample with the run seed; null = all.
    test_size: int | None = field(default=None, metadata=at_least(1))
    # MMLU subjects to load (they fill {subset} in local_files or name hub subsets); null = all.
    subjects: list[str] | None = None
    # BBH tasks to load; the same setting as subjects, under the name BBH gives them.
    tasks: list[str] | None = None
    # What a malformed row does: error, or skip it (logged and counted).
    on_bad_row: OnBadRow = OnBadRow.error
    # The examples' answer kind.
    answer_kind: AnswerKindSetting = AnswerKindSetting.auto
    # Where the question, choices, answer and id are in a row of the local files.
    fields: Fields = field(default_factory=Fields)
    # The same for the hub version when its layout differs from the local files; null = fields.
    hub_fields: Fields | None = None
    # The prompt templates.
    prompts: PromptConfig = field(default_factory=PromptConfig)

    @property
    def subsets(self) -> list[str] | None:
        """The selected subjects or tasks; None = all."""
        return self.subjects if self.subjects is not None else self.tasks

    def problems(self) -> list[str]:
        """Mistakes OmegaConf's types cannot catch, found before any row is read."""
        problems = []
        if self.subjects is not None and self.tasks is not None:
            problems.append("set dataset.subjects or dataset.tasks, not both")
        if self.train_split == self.test_split:
            problems.append(
                f"dataset.train_split and dataset.test_split are both '{self.test_split}'; "
                "set dataset.train_split=null to divide it into train and test"
            )
        if self.test_split == HELD_OUT and (self.train_split is None or self.validation_from_train == 0):
            problems.append(
                f"dataset.test_split={HELD_OUT} evaluates on train questions set aside: it needs "
                "dataset.train_split and dataset.validation_from_train > 0"
            )
        if self.train_split is not None and self.local_path is not None and Path(self.local_path).is_file():
            problems.append(
                f"dataset.local_path={self.local_path} is one file, so one split; "
                "set dataset.train_split=null to divide it into train and test"
            )
        for key, fields in [("dataset.fields", self.fields), ("dataset.hub_fields", self.hub_fields)]:
            if fields is not None:
                problems += _fields_problems(fields, key, self.answer_kind)
        return problems


def as_dataset_config(cfg: "DatasetConfig | DictConfig") -> DatasetConfig:
    """A checked DatasetConfig from one, or from a Hydra/OmegaConf node (interpolations resolved).

    Raises DatasetError naming every problem of `cfg.problems()`."""
    if not isinstance(cfg, DatasetConfig):
        if OmegaConf.get_type(cfg) is not DatasetConfig:
            cfg = OmegaConf.merge(OmegaConf.structured(DatasetConfig), OmegaConf.to_container(cfg, resolve=True))
        cfg = OmegaConf.to_object(cfg)
    problems = problems_of(cfg, "dataset.")
    if problems:
        raise DatasetError(f"dataset {cfg.name}: " + "; ".join(problems))
    return cfg


def _fields_problems(fields: Fields, key: str, answer_kind: AnswerKindSetting) -> list[str]:
    problems = []
    if fields.choices is not None and fields.choice_columns:
        problems.append(f"set {key}.choices or {key}.choice_columns, not both")
    if len(fields.choice_columns) == 1 or len(fields.choice_columns) > 26:
        problems.append(f"{key}.choice_columns needs 2 to 26 columns")
    if fields.answer_key is AnswerKey.label and fields.choice_labels is None:
        problems.append(f"{key}.answer_key=label needs {key}.choice_labels")
    if fields.has_choices and answer_kind not in (AnswerKindSetting.auto, AnswerKindSetting.letter):
        problems.append(f"questions with choices have letter answers, not dataset.answer_kind={answer_kind.value}")
    return problems
