"""Grading a rationale: the answer of its final statement (data/statements.py) against the gold
answer, one small rule set per answer kind. docs/grading.md states every rule with examples.

The grade is the reward every sampler filters on, so it is strict about hedging (two options, "yes
or no", a letter whose option text names another option: no answer) and generous about format
(markdown, LaTeX boxes, lower case, option text instead of the letter, 1/2 for 0.5). A rationale
that never concludes has no answer: the grader does not pick a number it merely mentioned.
A rationale cut off at the token limit concludes only if its statements agree.
A rationale without a readable answer is wrong, never an error."""

import functools
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
    # "last_line", "conclusion_line", "option_sentence", "one_sentence", "conclusion_sentence",
    # "opening_yes_no", "opening_clause" when an answer was read; else why there is none: "no_statement",
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
            return _option_sentence(answer_region(completion), example)
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


# A sentence whose complement of "is"/"are" ends it: "The natural habitat of ... is in the barn."
_IS_COMPLEMENT = re.compile(r"(?P<subject>.+)\s(?:is|are)\s+(?P<complement>.+?)[\s.!]*", re.IGNORECASE | re.DOTALL)
# Sentences that do not state an answer: a question, a negation, a condition, an alternative, a guess.
_NOT_STATED = re.compile(
    r"\?|\b(?:not|no|never|if|whether|or|either|neither|nor|maybe|perhaps|possibly|might|could|unless)\b|n't\b",
    re.IGNORECASE,
)
_PRONOUN_SUBJECT = re.compile(
    r"(?:(?:so|thus|therefore|hence|then|overall|in\s+conclusion)\b[\s,]*)?"
    r"(?:this|that|these|those|it|its|which|what|who|there|here|each|every|one|they|he|she|we|you|i)\b",
    re.IGNORECASE,
)
_LONGEST_OPTION_SENTENCE = 300  # characters
# Question words that say nothing about what a sentence's subject is.
_FUNCTION_WORDS = frozenset(
    "which what when where does would could might should about from have that this these those their there "
    "they with your following best most many much some than then into onto".split()
)


def _option_sentence(text: str, example: Example) -> _Reading:
    """The option whose text the opening or the concluding sentence states as what the question
    asks for, the complement of "is"/"are" that ends the sentence ("The natural habitat of a small
    creature ... is in the barn."); a hedge when such sentences name different options."""
    sentences = [unwrap(sentence) for sentence in _SENTENCE_BREAK.split(text.strip()) if sentence.strip()]
    if not sentences:
        return _Reading(None, "no_statement")
    stated = [_stated_option(sentence, example) for sentence in sentences]
    if stated[0] is None and stated[-1] is None:
        return _Reading(None, "no_statement")
    named = set(stated) - {None}
    return _Reading(named.pop(), "option_sentence") if len(named) == 1 else _Reading(None, "hedge")


def _stated_option(sentence: str, example: Example) -> str | None:
    """The letter of the option whose whole text ends the sentence as the complement of "is"/"are",
    when the sentence's subject restates the question (shares a content word with it) and names no
    option, and the sentence is not a question, a negation, a condition, a guess or a premise
    copied from the question."""
    if len(sentence) > _LONGEST_OPTION_SENTENCE:
        return None
    match = _IS_COMPLEMENT.fullmatch(sentence)
    if not match or _NOT_STATED.search(sentence):
        return None
    subject, named = match.group("subject"), _options_named(match.group("complement"), example, whole=True)
    if len(named) != 1 or _PRONOUN_SUBJECT.match(subject.strip(" *_")):
        return None
    if _LETTER_REFERENCE.search(subject) or _options_named(re.sub(r"[,;:()\[\]\"“”]", " ", subject), example):
        return None
    if normalize_text(sentence) in normalize_text(example.question):
        return None
    return named.pop() if _content_words(subject) & _content_words(example.question) else None


def _content_words(text: str) -> set[str]:
    """Words of four letters or more that carry meaning, a plural's "s" set aside."""
    words = {word.removesuffix("s") for word in re.findall(r"[a-z]{4,}", text.lower())}
    return words - _FUNCTION_WORDS


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
        if number := _one_sentence_number(bare):
            return _number_reading(number, "one_sentence")
        if number := _concluding_number(completion):
            return _number_reading(number, "conclusion_sentence")
        return _Reading(None, "no_statement")
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
    return _sole_number(text) if len(text.split()) <= _LONGEST_DIRECT_ANSWER else None


# A sentence that concludes: "Therefore, ...", "So ...".
_CONCLUSION_LEAD = re.compile(r"[\s*_#>]*(?:so|therefore|thus|hence|overall|in\s+conclusion)\b", re.IGNORECASE)


def _concluding_number(completion: str) -> str | None:
    """The number of a completion whose last line is one concluding sentence holding exactly one
    number and no working: "... Therefore, the additional time is **4 minutes**." -> "4"."""
    lines = [line for line in answer_region(completion).splitlines() if line.strip()]
    return _sole_number(lines[-1]) if lines and _CONCLUSION_LEAD.match(lines[-1]) else None


def _sole_number(text: str) -> str | None:
    """The number of one sentence that holds exactly one number and no working."""
    sentence = unwrap(re.sub(r"\*\*|__", "", text))
    if "\n" in sentence or len(_SENTENCE_BREAK.split(sentence)) > 1:
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
        return _opening_yes_no(answer_region(completion), example.question)
    first = _YES_NO_WORD.search(statement.phrase)
    if first is None:
        return _Reading(None, "unreadable")
    after = re.match(r"\s*(?:or|/|and/or)\s*(\w+)", statement.phrase[first.end() :])
    if after and yes_no(after.group(1)) not in (None, yes_no(first.group(1))):
        return _Reading(None, "hedge")
    return _Reading(yes_no(first.group(1)), statement.form)


def _opening_yes_no(text: str, question: str) -> _Reading:
    """The direct answer of the first sentence: a yes/no word ("Yes, because ...", rule
    opening_yes_no) or the question's own clause affirmed or negated ("Shaunda tells the truth." for
    "Does Shaunda tell the truth?", rule opening_clause); unless a later sentence answers the other
    way ("... So, no.", "... so Shaunda lies."). A yes/no word inside the working is not an answer."""
    sentences = _SENTENCE_BREAK.split(text.strip())
    clause = _clause(question)
    direct = _DIRECT_YES_NO.match(sentences[0])
    if direct:
        opening, rule = yes_no(direct.group(1)), "opening_yes_no"
    else:
        opening, rule = _restated_clause(sentences[0], clause), "opening_clause"
    if opening is None:
        return _Reading(None, "no_statement")
    later = [_later_answer(sentence, clause) for sentence in sentences[1:]]
    last = ([opening] + [answer for answer in later if answer])[-1]
    return _Reading(opening, rule) if last == opening else _Reading(None, "hedge")


# The question's own clause: "Does Shaunda tell the truth?", "..., do you return to the starting
# point?", "Is the argument valid?" (the last such question in it).
_POLAR_QUESTION = re.compile(r"(?:^|(?<=[.!?:,\n]))\s*(does|do|is|are)\s+([^.!?:,\n]+?)\s*\?", re.IGNORECASE)
# A predicate and the one that denies it, as web_of_lies writes them.
_OPPOSITES = {"tell the truth": "lie"}
_LONGEST_QUESTION_SUBJECT = 4  # words
_LEAD_IN_WORDS = re.compile(r"(?:(?:so|therefore|thus|hence|overall|in\s+conclusion)\b[\s,:]*)?", re.IGNORECASE)
# What may follow a restated clause in its sentence: a reason or a consequence, not a condition.
_CLAUSE_CONTINUES = re.compile(r"(?:[,;]\s*|\s+)(?:because|since|as|so|which)\b|\s+[—–-]\s")
# A later mention of the clause that does not assert it: reported speech, a hypothesis, a negation.
_NOT_ASSERTED = re.compile(
    r"\b(?:says?|said|claims?|claimed|thinks?|believes?|if|whether|suppose|assume|assuming|unless|not)\b|n't\b|\?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Clause:
    """The question's clause as answers write it: each form (lower case) with the answer it gives,
    longest first, and a pattern that finds any of them as whole words (group i is form i)."""

    forms: tuple[tuple[str, str], ...]
    mentions: re.Pattern | None


@functools.lru_cache(maxsize=4096)
def _clause(question: str) -> _Clause:
    yes_forms, no_forms = _clause_forms(question)
    answers = [(form, "yes") for form in yes_forms] + [(form, "no") for form in no_forms]
    forms = tuple(sorted(answers, key=lambda answer: -len(answer[0])))
    if not forms:
        return _Clause((), None)
    return _Clause(forms, re.compile("|".join(rf"(?<![\w'])({re.escape(form)})(?![\w'])" for form, _ in forms)))


def _clause_forms(question: str) -> tuple[list[str], list[str]]:
    """The sentences that answer the question's clause yes ("shaunda tells the truth", "shaunda
    does not lie") and no ("shaunda lies", "shaunda does not tell the truth"), lower case; a subject
    of up to four words is tried at every length, so the forms include some that no one writes."""
    questions = _POLAR_QUESTION.findall(question)
    if not questions:
        return [], []
    auxiliary, clause = questions[-1][0].lower(), " ".join(questions[-1][1].lower().split())
    words = clause.split()
    yes_forms, no_forms = [], []
    for length in range(1, min(_LONGEST_QUESTION_SUBJECT, len(words) - 1) + 1):
        subject, predicate = " ".join(words[:length]), " ".join(words[length:])
        affirmed, denied = _affirmed_and_denied(auxiliary, subject, predicate)
        yes_forms += affirmed
        no_forms += denied
        if predicate in _OPPOSITES:
            affirmed, denied = _affirmed_and_denied(auxiliary, subject, _OPPOSITES[predicate])
            yes_forms += denied
            no_forms += affirmed
    return yes_forms, no_forms


def _affirmed_and_denied(auxiliary: str, subject: str, predicate: str) -> tuple[list[str], list[str]]:
    if auxiliary in ("is", "are"):
        denied = [f"{subject} {auxiliary} not {predicate}", f"{subject} {auxiliary}n't {predicate}"]
        return [f"{subject} {auxiliary} {predicate}"], denied
    verb, _, rest = predicate.partition(" ")
    rest = f" {rest}" if rest else ""
    be = "is" if auxiliary == "does" else "are"
    finite = _third_person(verb) if auxiliary == "does" else verb
    affirmed = [
        f"{subject} {finite}{rest}",
        f"{subject} {auxiliary} {verb}{rest}",
        f"{subject} {be} {_progressive(verb)}{rest}",
    ]
    denied = [
        f"{subject} {auxiliary} not {verb}{rest}",
        f"{subject} {auxiliary}n't {verb}{rest}",
        f"{subject} {be} not {_progressive(verb)}{rest}",
        f"{subject} {be}n't {_progressive(verb)}{rest}",
    ]
    return affirmed, denied


def _third_person(verb: str) -> str:
    if verb == "have":
        return "has"
    if re.search(r"(?:s|sh|ch|x|z|o)$", verb):
        return f"{verb}es"
    if re.search(r"[^aeiou]y$", verb):
        return f"{verb[:-1]}ies"
    return f"{verb}s"


def _progressive(verb: str) -> str:
    if verb.endswith("ie"):
        return f"{verb[:-2]}ying"
    if verb.endswith("e") and not verb.endswith("ee"):
        return f"{verb[:-1]}ing"
    return f"{verb}ing"


def _plain(sentence: str) -> str:
    """A sentence compared with the question's clause: unwrapped, lower case, one space, curly
    apostrophes straight, without its closing punctuation."""
    text = " ".join(unwrap(sentence.replace("’", "'")).lower().split())
    return text.rstrip(".!*_ ")


def _restated_clause(sentence: str, clause: _Clause) -> str | None:
    """ "yes" or "no" when the sentence is the question's clause affirmed or denied, alone or with a
    reason after it ("Shaunda lies, because Fletcher lies."); None for anything else."""
    text = _plain(sentence)
    text = text[_LEAD_IN_WORDS.match(text).end() :]
    for form, answer in clause.forms:
        if text == form or (text.startswith(form) and _CLAUSE_CONTINUES.match(text, len(form))):
            return answer
    return None


def _later_answer(sentence: str, clause: _Clause) -> str | None:
    """The answer a later sentence gives: a direct yes/no ("So, no."), else the last assertion of
    the question's clause in it ("Fletcher lies, so Shaunda lies."), not reported speech ("Fletcher
    says Shaunda lies"), a hypothesis ("If Shaunda lies, ...") nor a negation ("It is not true that
    Shaunda lies") in the same clause."""
    direct = _DIRECT_YES_NO.match(sentence)
    if direct:
        return yes_no(direct.group(1))
    if clause.mentions is None:
        return None
    text, answer = _plain(sentence), None
    for mention in clause.mentions.finditer(text):
        before = re.split(r"[,;:]", text[: mention.start()])[-1]
        if not _NOT_ASSERTED.search(before):
            answer = clause.forms[mention.lastindex - 1][1]
    return answer


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
