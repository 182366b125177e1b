"""The generator interface the samplers and the evaluation use."""

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Completion:
    text: str
    # The generated token ids, ending with the end-of-sequence token when the model stopped.
    token_ids: tuple[int, ...]
    # False when generation was cut at max_new_tokens.
    finished: bool


class Generator(Protocol):
    def generate(
        self, prompts: list[str], *, n: int, temperature: float, max_new_tokens: int
    ) -> list[list[Completion]]:
        """n completions for each prompt (temperature 0 = greedy)."""
        ...
