"""Allowed values of config fields, written beside the fields they check:

    lr: float = field(default=5e-5, metadata=above(0))

and, for rules between fields, a `problems()` method on the config class (`Checked`).
`problems_of(config)` walks a job's config and its nested configs and lists every problem at
once, each naming the key (its full dotted path), the value and what is allowed."""

from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

# The metadata key of a field's rule: (test, what is allowed).
ALLOWED = "allowed"


def allowed(test: Callable[[Any], bool], text: str) -> dict:
    return {ALLOWED: (test, text)}


def at_least(low: float) -> dict:
    return allowed(lambda value: value >= low, f">= {low}")


def above(low: float) -> dict:
    return allowed(lambda value: value > low, f"> {low}")


def one_of(*values: str) -> dict:
    return allowed(lambda value: value in values, f"one of {', '.join(values)}")


class Checked:
    """A config class with rules between its fields."""

    def problems(self) -> list[str]:
        """Each broken rule, naming its keys by their path in the job's config (a config class
        sits at one place in it: a sampler config at `sampler`)."""
        return []


def problems_of(config: Any, prefix: str = "") -> list[str]:
    """Every value of the config dataclass `config` (nested ones included) outside what its
    field allows, then every broken rule between fields. A None value is not checked (null
    means 'all' or 'not set' wherever a field allows it)."""
    found = []
    for field in fields(config):
        value = getattr(config, field.name)
        key = f"{prefix}{field.name}"
        if is_dataclass(value):
            found += problems_of(value, f"{key}.")
        elif value is not None and ALLOWED in field.metadata:
            test, text = field.metadata[ALLOWED]
            if not test(value):
                found.append(f"{key}={value} is out of range: allowed {text}")
    if isinstance(config, Checked):
        found += config.problems()
    return found
