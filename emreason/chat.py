"""Prompts as the model sees them: the dataset's user prompt inside the model's chat template."""

from emreason.data.config import PromptConfig
from emreason.data.example import Example
from emreason.data.prompts import user_prompt


class ChatPrompts:
    def __init__(self, tokenizer, prompts: PromptConfig):
        self.tokenizer = tokenizer
        self.prompts = prompts

    def text(self, example: Example, *, hint: bool) -> str:
        """The prompt string, ending where the assistant's rationale starts."""
        messages = [{"role": "user", "content": user_prompt(example, self.prompts, hint=hint)}]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
