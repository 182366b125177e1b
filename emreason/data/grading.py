"""Grading a rationale: the answer of its final statement (data/statements.py) against the gold
answer, one small rule set per answer kind. docs/grading.md states every rule with examples.

The grade is the reward every sampler filters on, so it is strict about hedging (two options, "yes
or no", a letter whose option text names another option: no answer) and generous about format
(markdown, LaTeX boxes, lower case, option text instead of the letter, 1/2 for 0.5). A rationale
that never concludes has no answer: the grader does not pick a number it merely mentioned.
A rationale cut off at the token limit concludes only if its statements agree.
A rationale without a readable answer is wrong, never an error."""

import logging
import re
from dataclasses import dataclass

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from sympy import Equality

from emreason.data.answers import LETTERS, normalize_number, normalize_text, written_options, yes_no
from emreason.data.example import AnswerKind, Example
from emreason.data.statements import Statement, answer_region, answer_statements, unwrap


@dataclass(frozen=True)
class Grade:
    # The extracted answer, normalised ("B", "72", "1/2", "yes", "syndrome therefrom"); None when
    # the completion has no single readable answer.
    answer: str | None
    correct: bool
    # Which rule decided, for audits (emreason-grade): "statement", "boxed", "answer_first", "bare",
    # "last_line", "conclusion_line", "one_sentence", "opening_yes_no" when an answer was read; else why there is none: "no_statement",
    # "unreadable", "hedge", "not_an_option", "letter_text_disagree", "unconcluded" (cut off at the
    # token limit without an answer statement, or while its statements still disagree).
    rule: str = "no_statement"
    # Character offset in the completion where the final answer statement ends (the math or bold
    # span it is in and its closing punctuation included); None without a statement. The M-step
    # trains a kept rationale up to here.
    answer_end: int | None = None


@dataclass(frozen=True)
class _Reading:
    answer: str | None
    rule: str


# "A" and "I" before a word are an article and a pronoun ("A forest", "I think"), not options.
_LETTER_REFERENCE = re.compile(
    r"\(([A-Za-z])\)|\b(?:option|choice|letter)\s+([A-Za-z])\b|(?<![\w'’-])([A-Z])(?![\w'’-])(?!\s+[a-z])"
)
_STARTS_WITH_LETTER = re.compile(r"\(?[A-Z]\)(?:\s|$)|[A-Z]\.?$")
_LETTER_ALONE = re.compile(r"\(?([A-Za-z])\)?\.?")
_HEDGE = re.compile(r"\s(?:or|and/or)\s|\s/\s", re.IGNORECASE)
_MATH = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
# Longer answer phrases are not parsed: math-verify's own time limit would make a grade depend
# on how busy the machine is, so it is off, and the input is bounded instead.
_LONGEST_MATH_PHRASE = 200


def _skip_disabled_timeout_notice(record: logging.LogRecord) -> bool:
    """A logging filter that drops math-verify's warning that its time limit is off (off on
    purpose, see above; it is logged by every process that grades, twice); its other warnings pass."""
    return not str(record.msg).startswith("Timeout is disabled")


for _logger in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_logger).addFilter(_skip_disabled_timeout_notice)


def _parse(text: str) -> list:
    return parse(text, _MATH, parsing_timeout=None) if len(text) <= _LONGEST_MATH_PHRASE else []


def grade(completion: str, example: Example, finished: bool = True) -> Grade:
    """The grade of one completion; finished=False for a completion cut off at the token limit.
    Raises nothing: an unreadable answer is a wrong one."""
    read = _READERS[example.answer_kind]
    # An answer placed before its label that reads as no answer at all is prose, not a statement:
    # "... The fourth planet from the Sun is the correct answer."
    statements = [
        s for s in answer_statements(completion)
        if s.form != "answer_first" or read(completion, s, example).rule != "unreadable"
    ]
    statement = statements[-1] if statements else None
    reading = read(completion, statement, example)
    if not finished and reading.answer is not None:
        stated = {read(completion, s, example).answer for s in statements} - {None}
        if statement is None or len(stated) > 1:
            reading = _Reading(None, "unconcluded")
    end = statement.end if statement else None
    return Grade(reading.answer, reading.answer is not None and _equal(reading.answer, example), reading.rule, end)


def extract_answer(completion: str, example: Example) -> str | None:
    return grade(completion, example).answer


def _equal(answer: str, example: Example) -> bool:
    if example.answer_kind is AnswerKind.NUMBER:
        return bool(verify(_parse(example.answer), _parse(answer), timeout_seconds=None))
    return canonical(answer, example.answer_kind) == canonical(example.answer, example.answer_kind)


def canonical(answer: str, kind: AnswerKind) -> str:
    """The form in which the grader compares answers of a kind: "True" and "yes" -> "yes",
    "1,000" -> "1000", "Syndrome, therefrom" -> "syndrome therefrom", a letter as it is.
    Numbers are graded by math-verify, which also equates forms this leaves apart ("1/2", "0.5")."""
    if kind is AnswerKind.NUMBER:
        return normalize_number(answer) or answer
    if kind is AnswerKind.YES_NO:
        return yes_no(answer) or answer
    if kind is AnswerKind.TEXT:
        return _words(answer)
    return answer


def _words(text: str) -> str:
    """Text compared word by word: a list written "syndrome, therefrom" equals "syndrome therefrom"."""
    return normalize_text(re.sub(r"(?<=\w)[,;](?=\s)", " ", text))


def _read_letter(completion: str, statement: Statement | None, example: Example) -> _Reading:
    allowed = "".join(_options(example))
    if statement is None:
        statement = _bare_option(completion, example)
        if statement is None:
            return _Reading(None, "no_statement")
    phrase = statement.phrase
    references = list(_LETTER_REFERENCE.finditer(phrase))
    if not references and re.fullmatch(r"\(?[a-z]\)?", phrase):
        references = list(re.finditer(r"([a-z])", phrase))
    letters = {next(g for g in m.groups() if g).upper() for m in references}
    if len(letters) > 1:
        return _Reading(None, "hedge")
    # Before its label an option's text must stand alone: "The fourth planet from the Sun is the
    # correct answer" is a description, not the option "the Sun".
    whole = statement.form == "answer_first"
    named_by_text = _options_named(_LETTER_REFERENCE.sub(" ", phrase), example, whole)
    if len(letters) == 1:
        stated = letters.pop()
        if stated not in allowed:
            return _Reading(None, "not_an_option")
        if named_by_text and named_by_text != {stated}:
            return _Reading(None, "letter_text_disagree")
        return _Reading(stated, statement.form)
    if len(named_by_text) == 1:
        return _Reading(named_by_text.pop(), statement.form)
    return _Reading(None, "hedge" if named_by_text else "unreadable")


def _bare_option(completion: str, example: Example) -> Statement | None:
    """A completion of one line that is an option ("B", "A) electrical", "carbon dioxide"), or whose
    last line is a letter alone ("... Mars orbits the Sun.\nb"), or whose last line is options alone
    after a conclusion line ending in "is:" ("Therefore, the best example is:\n(B) a burning match")."""
    line = unwrap(completion.strip())
    if "\n" not in line and (_STARTS_WITH_LETTER.match(line) or _options_named(line, example, whole=True)):
        return Statement(line, len(completion), "bare")
    lines = [text for text in line.split("\n") if text.strip()]
    last = unwrap(lines[-1]) if lines else ""
    last_letter = _LETTER_ALONE.fullmatch(last)
    if last_letter:
        return Statement(f"({last_letter.group(1)})", len(completion), "last_line")
    if len(lines) > 1 and _concludes(lines[-2]):
        last = _LOWER_CASE_LETTER_MARK.sub(lambda m: m.group(0).upper(), _BULLET.sub("", last))
        if _only_options(last, example):
            return Statement(last, len(completion), "conclusion_line")
    return None


# A line that introduces the answer on the next line: "Therefore, the best example is:". Not a
# question, a negation, nor a line introducing one option of a list ("The first option is:").
_CONCLUSION_LINE = re.compile(r"\b(?:is|would\s+be|should\s+be|must\s+be|will\s+be)[\s*_]*:[\s*_]*$", re.IGNORECASE)
_NOT_A_CONCLUSION = re.compile(
    r"\?|\b(?:not|options?|choices?|first|second|third|fourth|fifth|next|other|following|each)\b|n't\b", re.IGNORECASE
)
_BULLET = re.compile(r"^[-*•]\s+")
_LOWER_CASE_LETTER_MARK = re.compile(r"^\(?[a-z](?=[).:]\s)")
_JOINED = re.compile(r"\s+(?:or|and|and/or)\s+|[/,;]")


def _concludes(line: str) -> bool:
    return bool(_CONCLUSION_LINE.search(line)) and not _NOT_A_CONCLUSION.search(line)


def _only_options(line: str, example: Example) -> bool:
    """Whether the line is options and nothing else: a letter, a letter with an option's text, an
    option's text, or several of these joined by "or", "and" or "/" (a hedge, read as one)."""
    rest = _LETTER_REFERENCE.sub(" ", line)
    texts = {normalize_text(option) for option in _options(example).values()} - {""}
    pieces = [normalize_text(piece.strip(" ().:")) for piece in _JOINED.split(rest)]
    if normalize_text(rest.strip(" ().:")) in texts:
        return True
    return all(not piece or piece in texts for piece in pieces) and (rest != line or any(pieces))


def _options(example: Example) -> dict[str, str]:
    """Letter -> option text; BBH writes the options inside the question instead of in `choices`."""
    return dict(zip(LETTERS, example.choices)) if example.choices else written_options(example.question)


def _options_named(text: str, example: Example, whole: bool = False) -> set[str]:
    """Letters of the options whose whole text the phrase contains (or is, with whole=True); a
    longer option's text is matched first, so "salt water" does not also name the option "water"."""
    text = normalize_text(text).strip("()[]")
    options = {letter: normalize_text(option) for letter, option in _options(example).items()}
    if whole:
        return {letter for letter, option in options.items() if option == text}
    remaining = f" {text} "
    named = set()
    for letter, option in sorted(options.items(), key=lambda item: -len(item[1])):
        if option and f" {option} " in remaining:
            named.add(letter)
            remaining = remaining.replace(f" {option} ", " | ")
    return named


def _read_number(completion: str, statement: Statement | None, example: Example) -> _Reading:
    if statement is None:
        bare = completion.strip()
        if re.fullmatch(r"[-−$\d.,/%\s]+", bare) and re.search(r"\d", bare):
            return _number_reading(bare, "bare")
        number = _one_sentence_number(bare)
        return _number_reading(number, "one_sentence") if number else _Reading(None, "no_statement")
    if _HEDGE.search(statement.phrase) and len(re.findall(r"\d+(?:[.,]\d+)*", statement.phrase)) > 1:
        return _Reading(None, "hedge")
    return _number_reading(statement.phrase, statement.form)


# A number as a direct answer writes it: "13", "-3.5", "$1,000", "1/2", "50%" (a sign only where
# it does not follow a word: "10-3" is two numbers).
_NUMBER_TOKEN = re.compile(r"(?:(?<![\w)])[-−])?\$?\d+(?:[.,/]\d+)*%?")
# What makes a sentence more than a direct answer: working (an operator, a list or step label, a
# colon), a question, a negation or an alternative.
_NOT_A_DIRECT_ANSWER = re.compile(
    r"[=+×÷^<>:?]|\b(?:not|no|never|or|if|step|approximately|about|around|maybe|perhaps)\b|n't\b", re.IGNORECASE
)
_LONGEST_DIRECT_ANSWER = 15  # words


def _one_sentence_number(text: str) -> str | None:
    """The number of a completion that is one short sentence holding exactly one number and no
    working: "I have 13 vegetables in total." -> "13"."""
    sentence = unwrap(re.sub(r"\*\*|__", "", text))
    if "\n" in sentence or len(_SENTENCE_BREAK.split(sentence)) > 1 or len(sentence.split()) > _LONGEST_DIRECT_ANSWER:
        return None
    numbers = _NUMBER_TOKEN.findall(sentence)
    if len(numbers) != 1 or _NOT_A_DIRECT_ANSWER.search(_NUMBER_TOKEN.sub(" ", sentence)):
        return None
    return numbers[0].rstrip(".,")


def _number_reading(text: str, rule: str) -> _Reading:
    """The value the text ends at ("2 + 3 = 5" -> 5, "\\(N = 60\\)" -> 60), parsed by math-verify."""
    # "\$1,234.50" (LaTeX's escaped dollar sign) is read by math-verify only unescaped.
    parsed = _parse(text.replace("−", "-").replace("\\$", "$"))
    if not parsed:
        return _Reading(None, "unreadable")
    value, written = parsed[0], str(parsed[-1])
    if isinstance(value, Equality):
        # math-verify keeps a LaTeX equation whole: the template's placeholder filled in ("N = 60").
        value, written = value.rhs, written.rsplit("=", 1)[-1]
    return _Reading(normalize_number(written) or str(value), rule)


_YES_NO_WORD = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
# A sentence that is a direct yes/no answer: "No, because ...", "**True.**", "So, yes." (not "No one
# lies", where "no" is part of the sentence).
_DIRECT_YES_NO = re.compile(
    r"[\s*_#>\"“'`]*(?:(?:so|therefore|thus|hence|overall|in\s+conclusion)\b[\s,:]*)?[*_\"“'`]*"
    r"(yes|no|true|false)\b[*_\"”'`]*\s*(?:[,.!:;—–-]|$)",
    re.IGNORECASE,
)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n")


def _read_yes_no(completion: str, statement: Statement | None, example: Example) -> _Reading:
    """The first yes/no/true/false word of the final statement ("yes or no" is a hedge); without a
    statement, the direct answer the completion opens with."""
    if statement is None:
        return _opening_yes_no(answer_region(completion))
    first = _YES_NO_WORD.search(statement.phrase)
    if first is None:
        return _Reading(None, "unreadable")
    after = re.match(r"\s*(?:or|/|and/or)\s*(\w+)", statement.phrase[first.end() :])
    if after and yes_no(after.group(1)) not in (None, yes_no(first.group(1))):
        return _Reading(None, "hedge")
    return _Reading(yes_no(first.group(1)), statement.form)


def _opening_yes_no(text: str) -> _Reading:
    """The direct yes/no answer of the first sentence ("Yes, because ..."), unless a later sentence
    answers the other way ("... So, no."). A yes/no word inside the working is not an answer."""
    answers = [_DIRECT_YES_NO.match(sentence) for sentence in _SENTENCE_BREAK.split(text.strip())]
    if not answers[0]:
        return _Reading(None, "no_statement")
    opening = yes_no(answers[0].group(1))
    last = [yes_no(answer.group(1)) for answer in answers if answer][-1]
    return _Reading(opening, "opening_yes_no") if last == opening else _Reading(None, "hedge")


def _read_text(completion: str, statement: Statement | None, example: Example) -> _Reading:
    if statement is None:
        # A completion of one line may be the answer itself ("True").
        lines = completion.strip().splitlines()
        answer = normalize_text(unwrap(lines[0])) if len(lines) == 1 else ""
        return _Reading(answer or None, "bare" if answer else "no_statement")
    if _HEDGE.search(f" {statement.phrase} "):
        return _Reading(None, "hedge")
    answer = _words(statement.phrase)
    return _Reading(answer or None, statement.form if answer else "unreadable")


_READERS = {
    AnswerKind.LETTER: _read_letter,
    AnswerKind.NUMBER: _read_number,
    AnswerKind.YES_NO: _read_yes_no,
    AnswerKind.TEXT: _read_text,
}
