"""Prompts as the model sees them: the dataset's user prompt inside the model's chat template,
cut to the engine's prompt limit when it is longer."""

from dataclasses import dataclass, replace

from emreason.data.config import PromptConfig
from emreason.data.example import Example
from emreason.data.prompts import user_prompt
from emreason.generation.vllm_engine import GeneratorConfig, LongPrompt

# Stands where the middle of a truncated question was.
CUT_MARK = " [...] "


@dataclass(frozen=True)
class EnginePrompt:
    text: str
    # True when the middle of the question (or of the whole user turn) was cut out to fit.
    truncated: bool


class ChatPrompts:
    def __init__(self, tokenizer, prompts: PromptConfig, generator: GeneratorConfig | None = None):
        """With a generator config, `for_engine` holds prompts to the engine's limit: every
        rationale keeps its full max_new_tokens budget within max_model_len."""
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.max_prompt_tokens = generator.max_model_len - generator.max_new_tokens if generator else None
        self.on_long_prompt = generator.on_long_prompt if generator else None

    def text(self, example: Example, *, hint: bool) -> str:
        """The prompt string, ending where the assistant's rationale starts."""
        return self._chat(user_prompt(example, self.prompts, hint=hint))

    def for_engine(self, example: Example, *, hint: bool) -> EnginePrompt | None:
        """The prompt to send to the engine, within max_prompt_tokens; None when it is too long
        and generator.on_long_prompt=skip, or when even a truncated one cannot fit."""
        text = self.text(example, hint=hint)
        if self.max_prompt_tokens is None or self._length(text) <= self.max_prompt_tokens:
            return EnginePrompt(text, truncated=False)
        truncated = self._truncated(example, hint) if self.on_long_prompt is LongPrompt.truncate else None
        return EnginePrompt(truncated, truncated=True) if truncated else None

    def _truncated(self, example: Example, hint: bool) -> str | None:
        """Cut the middle of the question, so the chat template, the answer options, the hint and
        the instructions stay whole; when they alone are too long, cut the middle of the user turn."""

        def with_question(question: str) -> str:
            return self._chat(user_prompt(replace(example, question=question), self.prompts, hint=hint))

        text = self._fitted(example.question, with_question)
        if text is None:
            text = self._fitted(user_prompt(example, self.prompts, hint=hint), self._chat)
        return text

    def _fitted(self, piece: str, render) -> str | None:
        """render(piece with its middle cut out), cutting more until it fits; None when it does
        not fit even with all of piece cut."""
        piece_length = self._length(piece, special_tokens=False)
        cut, text = 0, render(piece)
        while (excess := self._length(text) - self.max_prompt_tokens) > 0:
            if cut == piece_length:
                return None
            # Decoding a cut and tokenizing it again can merge tokens differently: measure again.
            cut = min(cut + excess + self._length(CUT_MARK, special_tokens=False), piece_length)
            text = render(self._without_middle(piece, cut))
        return text

    def _without_middle(self, text: str, tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        kept = len(ids) - tokens
        head, tail = ids[: kept - kept // 2], ids[len(ids) - kept // 2 :]
        return self.tokenizer.decode(head).rstrip() + CUT_MARK + self.tokenizer.decode(tail).lstrip()

    def _chat(self, user_turn: str) -> str:
        messages = [{"role": "user", "content": user_turn}]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _length(self, text: str, *, special_tokens: bool = True) -> int:
        # vLLM tokenizes a text prompt with the tokenizer's special tokens, as this does.
        return len(self.tokenizer(text, add_special_tokens=special_tokens).input_ids)
