"""Finding the final answer statement of a rationale: where the model says what its answer is.

The rules, for every answer kind (docs/grading.md states them with examples):
- A statement is "the/my/final/correct answer is ...", "Answer: ...", "#### ..." or "\\boxed{...}".
- Run-on text is cut off: after a statement, a line that starts a new "Question:", "Q:",
  "Problem:", "User:" (a question the model invented) or "```output" (the output of a program
  it only pretends to run) and everything after it are ignored.
- Template echoes are not statements: one inside a quotation after "finish/end with", or one whose
  answer is a placeholder ("(X)", "N", "TEXT"), as small models repeat the prompt's instruction.
  A placeholder letter filled in with an option's text ("(X) a thermometer") reads as that text.
- The LAST statement left decides, whatever filler words it carries ("the answer is actually (B)"),
  except in a completion cut off at the token limit: there, statements that disagree with each
  other are deliberation that never concluded, and so is a completion without any statement.
- A statement's answer phrase runs to the end of its sentence or line, or to a clause that gives a
  reason ("because", "since", ", not ..."); when the statement ends its line ("The answer is:"),
  the phrase is the block of lines below it. A negated answer is skipped: "not (A) but (C)" reads
  C, "not (A)" alone nothing.
"""

import re
from dataclasses import dataclass

_STATEMENT = re.compile(
    r"\b(?:the|my|our|final|correct|right|best)\s+(?:(?:final|correct|right|best)\s+)?(?:answer|option|choice)"
    r"(?:\s+to\s+[^.\n]{1,60}?)?\s*(?:\s(?:is|was|would\s+be|should\s+be|must\s+be|will\s+be)\b\s*:?|[:=])"
    r"|^[\s*_#>]*(?:final\s+)?answer[\s*_]*(?:[:\-]|$)|\banswer\s*:|####",
    re.IGNORECASE | re.MULTILINE,
)
_BOXED = re.compile(r"\\boxed\s*\{")
# An echoed instruction: 'Then finish with "The answer is Yes." or "The answer is No."', to its line's end.
_ECHO = re.compile(r"(?:finish|end|conclude|answer)\w*\s+(?:it\s+)?with\s*[\"“'`][^\n]*", re.IGNORECASE)
_PLACEHOLDER = re.compile(
    r"[\s*_\"“”'`$]*(?:\(?X\)?|N|TEXT|ANSWER|\.\.\.|_+|\[[^\]]*\]|\{[^}]*\}|<[^>]*>)[\s.*_\"“”'`$]*",
)
# The prompt's letter placeholder with an option's text after it: "(X) a thermometer".
_FILLED_LETTER_PLACEHOLDER = re.compile(r"^[\s*_]*\(X\)\s+(?=\S)")
# Run-on text: a question the model invented, or the output of a program it only pretends to run.
_RUN_ON = re.compile(
    r"^[\s*#>]*(?:question|q|problem|exercise|user|human|instruction)\s*\d*\s*[:.]|<\|im_start\|>|^\s*```\s*output\b",
    re.IGNORECASE | re.MULTILINE,
)
# Where an answer phrase ends: its line, its sentence (a full stop before a space, not a decimal
# point), or a clause giving a reason or a contrast.
_PHRASE_END = re.compile(
    r"\n|[.!?](?=\s|$|[*_\"”'`)])|\s+(?:because|since|due\s+to|as\s+(?:it|they|the|this))\b"
    r"|[,;]\s*(?:because|since|as|which|so|but|not|rather|while|whereas)\b",
    re.IGNORECASE,
)
# A negated answer: "not (A) but (C)" answers C, "not (A)" alone answers nothing.
_NEGATED = re.compile(
    r"[\s*_]*not\s+[^.\n]*?(?:(?P<instead>,?\s+but\s+(?:rather\s+)?|[,;]\s*(?:it\s+is|it's|rather)\s+)|(?=[.\n]|$))",
    re.IGNORECASE,
)
# Left over around a phrase: markdown, LaTeX math delimiters and quotation marks.
_WRAPPING = " \t*_`\"“”'$:"
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf|boxed)\s*\{([^{}]*)\}")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
# Delimited spans a statement may end inside: LaTeX math ("\\(\\boxed{8}\\)", "$$ ... $$", "$8$",
# whose inner sides touch no space, so that "$5 and $7" is money) and bold markdown.
_DELIMITED = re.compile(
    r"\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)|\$(?=\S)[^$\n]*?(?<=\S)\$(?!\d)|\*\*(?=\S)[^\n]*?(?<=\S)\*\*",
    re.DOTALL,
)


@dataclass(frozen=True)
class Statement:
    # The answer phrase, unwrapped of markdown and LaTeX ("(B) Mars", "72 clips", "valid").
    phrase: str
    # Character offset in the completion where the statement ends: after the math or bold span
    # it is in and its closing punctuation.
    end: int
    # "statement" or "boxed": which form the final statement took.
    form: str


def answer_region(completion: str) -> str:
    """The completion up to the first question the model invented after a statement."""
    first = _first_statement_end(completion)
    if first is None:
        return completion
    invented = _RUN_ON.search(completion, first)
    return completion[: invented.start()] if invented else completion


def answer_statements(completion: str) -> list[Statement]:
    """Every answer statement of the completion that is not a template echo, in order."""
    region = answer_region(completion)
    echoes = [echo.span() for echo in _ECHO.finditer(region)]
    found = []
    for start, phrase_start, form in sorted(_statements(region), key=lambda s: s[0]):
        if any(echo_start < start < echo_end for echo_start, echo_end in echoes):
            continue
        phrase, end = _phrase(region, phrase_start, form)
        if not _PLACEHOLDER.fullmatch(phrase):
            found.append(Statement(unwrap(_FILLED_LETTER_PLACEHOLDER.sub("", phrase)), end, form))
    return found


def unwrap(text: str) -> str:
    """ "**\\boxed{\\text{B}}**" -> "B": markdown, LaTeX text/box wrappers and quotes removed."""
    previous = None
    while previous != text:
        previous = text
        text = _LATEX_WRAPPER.sub(r"\1", text).strip(_WRAPPING)
    return text


def _statements(region: str) -> list[tuple[int, int, str]]:
    """(start, start of the answer phrase, form) of every statement."""
    found = [(m.start(), m.end(), "statement") for m in _STATEMENT.finditer(region)]
    found += [(m.start(), m.end(), "boxed") for m in _BOXED.finditer(region)]
    # "The answer is \boxed{B}" is one statement: the box, which says exactly where the answer is.
    boxes = {start for start, _, form in found if form == "boxed"}
    return [s for s in found if s[2] == "boxed" or not _box_follows(region, s[1], boxes)]


def _box_follows(region: str, position: int, boxes: set[int]) -> bool:
    gap = re.match(r"[\s:$*_]*", region[position:])
    return position + gap.end() in boxes


def _first_statement_end(completion: str) -> int | None:
    starts = [m.end() for m in _STATEMENT.finditer(completion)] + [m.end() for m in _BOXED.finditer(completion)]
    return min(starts) if starts else None


def _phrase(region: str, start: int, form: str) -> tuple[str, int]:
    if form == "boxed":
        end = _closing_brace(region, start)
        return region[start:end], _statement_end(region, min(end + 1, len(region)))
    rest_of_line = region[start:].split("\n", 1)[0]
    if not rest_of_line.strip(_WRAPPING) and "\n" in region[start:]:
        return _block_below(region, start + len(rest_of_line) + 1)
    negated = _NEGATED.match(region, start)
    if negated and negated.group("instead") is None:
        return "", _statement_end(region, negated.end())
    if negated:
        start = negated.end()
    cut = _PHRASE_END.search(region, start)
    end = cut.start() if cut else len(region)
    return region[start:end], _statement_end(region, end)


def _block_below(region: str, start: int) -> tuple[str, int]:
    """The lines after a statement that ends its own line, up to a blank line: a list written
    one item per line ("The answer is:\\n- syndrome\\n- therefrom") reads as "syndrome therefrom"."""
    lines, end = [], start
    for line in region[start:].split("\n"):
        if not line.strip():
            if lines:
                break
            end += len(line) + 1
            continue
        lines.append(_LIST_MARKER.sub("", line).strip())
        end += len(line) + 1
    return " ".join(lines), min(end, len(region))


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return index
    return len(text)


def _statement_end(text: str, end: int) -> int:
    """Where a statement whose answer ends at `end` ends: after the math or bold span it is in
    ("\\(\\boxed{8}\\)", "**The answer is 8**") and its closing punctuation, so that a rationale
    trained up to there has no delimiter left open."""
    for span in _DELIMITED.finditer(text):
        if span.start() < end < span.end():
            end = span.end()
    closing = re.match(r"[.!?*_\"”'`)$}\]]*", text[end:])
    return end + closing.end()
