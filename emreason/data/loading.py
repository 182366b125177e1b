"""load_benchmark: the train and test Examples of a benchmark, as its DatasetConfig describes.

Which questions are train and which are test:
- train_split set (ARC-Easy, OpenBookQA, GSM8K): the benchmark's own splits.
- train_split null (ARC-Challenge, whose local copy has only its test split; BBH, one list per
  task; MMLU): the test split is divided. Within each subset (subject, task) the distinct
  questions are shuffled with split_seed and the first train_fraction of them go to train, so
  identical questions land on the same side and every subset is represented in both.
With validation_from_train = n, n questions of the train split (a split_seed shuffle) are set
aside as the `held_out` split: a validation split for GSM8K, which has none, that no E-step draws.
Either way a train question that also stands in the test set (same text and choices) is dropped
from train: ARC-Easy's train and test splits share two, MMLU repeats some across subjects.
Then train_size and test_size examples are sampled with the run seed.
"""

import logging
import random
from collections import Counter
from dataclasses import dataclass

from omegaconf import DictConfig

from emreason.data.config import HELD_OUT, DatasetConfig, as_dataset_config
from emreason.data.errors import DatasetError
from emreason.data.example import Example
from emreason.data.parsing import parse_source
from emreason.data.sources import read_split

log = logging.getLogger(__name__)


@dataclass
class Benchmark:
    name: str
    train: list[Example]
    test: list[Example]
    # Malformed rows left out because of on_bad_row=skip.
    skipped_rows: int


# The examples of one subset (None for a benchmark without subsets).
_Subset = tuple[str | None, list[Example]]


def load_benchmark(cfg: DatasetConfig | DictConfig, seed: int) -> Benchmark:
    cfg = as_dataset_config(cfg)
    if cfg.test_split == HELD_OUT:
        train_subsets, skipped = _load_split(cfg, cfg.train_split)
        train, test = _held_out(_all_examples(train_subsets), cfg.validation_from_train, cfg.split_seed)
    else:
        test_subsets, skipped = _load_split(cfg, cfg.test_split)
        if cfg.train_split is None:
            train, test = _divide(test_subsets, cfg.train_fraction, cfg.split_seed)
        else:
            train_subsets, skipped_in_train = _load_split(cfg, cfg.train_split)
            skipped += skipped_in_train
            train, test = _all_examples(train_subsets), _all_examples(test_subsets)
        if cfg.validation_from_train:
            train, _ = _held_out(train, cfg.validation_from_train, cfg.split_seed)
    train = _without_questions_of(test, train, cfg.name)
    train = _sample(train, cfg.train_size, seed, "train", cfg.name)
    test = _sample(test, cfg.test_size, seed, "test", cfg.name)
    _check_disjoint(train, test, cfg.name)
    log.info("%s: %d train and %d test examples, %d bad rows skipped", cfg.name, len(train), len(test), skipped)
    return Benchmark(cfg.name, train, test, skipped)


def _load_split(cfg: DatasetConfig, split: str) -> tuple[list[_Subset], int]:
    subsets, skipped = [], 0
    for source in read_split(cfg, split):
        parsed = parse_source(source, split, cfg.answer_kind, cfg.on_bad_row)
        subsets.append((source.subset, parsed.examples))
        skipped += parsed.skipped_rows
    return subsets, skipped


def _all_examples(subsets: list[_Subset]) -> list[Example]:
    return [example for _, examples in subsets for example in examples]


def _question(example: Example) -> tuple[str, tuple[str, ...]]:
    """What makes two examples the same question: its text and its choices (MMLU repeats
    "Which of the following is true?" with different choices)."""
    return example.question, example.choices


def _divide(subsets: list[_Subset], train_fraction: float, split_seed: int) -> tuple[list[Example], list[Example]]:
    train, test = [], []
    for subset, examples in subsets:
        questions = list(dict.fromkeys(_question(example) for example in examples))
        # Seeded by subset name, so a subject's division does not depend on which others are loaded.
        random.Random(f"{split_seed}/{subset}").shuffle(questions)
        train_questions = set(questions[: round(len(questions) * train_fraction)])
        for example in examples:
            (train if _question(example) in train_questions else test).append(example)
    return train, test


def _held_out(train: list[Example], size: int, split_seed: int) -> tuple[list[Example], list[Example]]:
    """(the train examples left, `size` of them set aside), both in file order."""
    order = list(range(len(train)))
    random.Random(f"{split_seed}/held_out").shuffle(order)
    aside = set(order[:size])
    return [e for i, e in enumerate(train) if i not in aside], [e for i, e in enumerate(train) if i in aside]


def _without_questions_of(test: list[Example], train: list[Example], name: str) -> list[Example]:
    test_questions = {_question(example) for example in test}
    kept = [example for example in train if _question(example) not in test_questions]
    if len(kept) < len(train):
        log.warning(
            "%s: dropped %d train examples whose question is also in the test split", name, len(train) - len(kept)
        )
    return kept


def _sample(examples: list[Example], size: int | None, seed: int, which: str, name: str) -> list[Example]:
    """`size` of the examples drawn with the seed, kept in their file order; all when size is None."""
    if size is None:
        return examples
    if size > len(examples):
        log.warning(
            "%s: dataset.%s_size=%d but there are %d %s examples; using all", name, which, size, len(examples), which
        )
        return examples
    chosen = sorted(random.Random(f"{seed}/{which}").sample(range(len(examples)), size))
    return [examples[index] for index in chosen]


def _check_disjoint(train: list[Example], test: list[Example], name: str) -> None:
    repeated_ids = [id_ for id_, count in Counter(example.id for example in train + test).items() if count > 1]
    if repeated_ids:
        raise DatasetError(
            f"dataset {name}: example ids repeat, e.g. {repeated_ids[:3]}; "
            "set dataset.fields.id=null to number the rows instead"
        )
    shared = {_question(example) for example in train} & {_question(example) for example in test}
    assert not shared, f"{name}: train and test share {len(shared)} questions"
