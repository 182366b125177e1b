"""The user turn of a question, with or without the correct answer as a hint. The caller applies
the model's chat template; the templates themselves live in PromptConfig."""

from emreason.data.answers import letter
from emreason.data.config import PromptConfig
from emreason.data.example import AnswerKind, Example


def user_prompt(example: Example, prompts: PromptConfig, hint: bool) -> str:
    templates = prompts.hinted if hint else prompts.unhinted
    template = getattr(templates, example.answer_kind.value)
    question = example.question + "".join(
        f"\n({letter(index)}) {choice}" for index, choice in enumerate(example.choices)
    )
    # The unhinted prompt gets no {answer}: a template that asks for it would leak the gold answer.
    values = {"question": question, "answer": example.answer} if hint else {"question": question}
    if example.answer_kind is AnswerKind.YES_NO:
        values |= dict(zip(("yes", "no"), _yes_no_words(example.answer)))
    try:
        return template.format(**values)
    except KeyError as error:
        raise ValueError(
            f"the {'hinted' if hint else 'unhinted'} {example.answer_kind.value} prompt template uses "
            f"{{{error.args[0]}}}; it may use {', '.join('{' + key + '}' for key in values)}"
        ) from error


def _yes_no_words(answer: str) -> tuple[str, str]:
    """The data set's own words: "True"/"False" when its answers are true/false, else "Yes"/"No"."""
    return ("True", "False") if answer.strip().lower() in ("true", "false") else ("Yes", "No")
