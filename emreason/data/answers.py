"""Canonical forms of answers, shared by the loaders (gold answers) and the grader (model answers),
so that both sides of a comparison are normalised the same way."""

import re
import string
from decimal import Decimal, InvalidOperation

LETTERS = string.ascii_uppercase

# A number as models and GSM8K write it: "-3", "1,000", "$1,000.50", "42". The sign counts only
# when it does not follow a word or a closing bracket, so "10-3" reads as 10 and 3.
NUMBER = re.compile(r"(?:(?<![\w)])[-−])?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)")

# An option written inside the question, as BBH does: a line starting with "(A)".
_OPTION = re.compile(r"^\s*\(([A-Z])\)[ \t]*(.*)$", re.MULTILINE)

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
# Spaces around brackets carry no meaning in BBH's dyck answers: "] ] )" equals "]])".
_SPACE_AROUND_BRACKET = re.compile(r"\s*([()\[\]{}<>])\s*")
# Sentence punctuation and markdown around a text answer; brackets are kept (they can be the answer).
_SURROUNDING = " \t\n.,;:!?\"'`*"


def letter(index: int) -> str:
    return LETTERS[index]


def option_letters(question: str) -> str:
    """The letters of the options written inside a question ("(A) ..." lines), in order."""
    return "".join(written_options(question))


def written_options(question: str) -> dict[str, str]:
    """The options written inside a question, letter -> text: "(C) 05/01/2021" -> {"C": "05/01/2021"}."""
    options: dict[str, str] = {}
    for option_letter, text in _OPTION.findall(question):
        options.setdefault(option_letter, text.strip())
    return options


def normalize_number(text: str) -> str | None:
    """ "1,000" -> "1000", "$3.50" -> "3.5", "18.0" -> "18", "42." -> "42", "50%" -> "50";
    None when the text is not a single number."""
    cleaned = text.strip().rstrip(".%").replace(",", "").replace("$", "").replace("−", "-")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def normalize_text(text: str) -> str:
    """Case, surrounding punctuation, articles and whitespace do not count."""
    text = text.strip(_SURROUNDING).lower()
    text = _ARTICLES.sub(" ", text)
    text = " ".join(text.split())
    return _SPACE_AROUND_BRACKET.sub(r"\1", text)


_POLARITY = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


def yes_no(word: str) -> str | None:
    """ "Yes"/"true" -> "yes", "No"/"FALSE" -> "no"; None for any other word."""
    return _POLARITY.get(word.strip().lower())
