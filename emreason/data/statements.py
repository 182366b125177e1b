"""Finding the final answer statement of a rationale: where the model says what its answer is.

The rules, for every answer kind (docs/grading.md states them with examples):
- A statement is "the/my/final/correct answer is ...", "Answer is ..." at a sentence's start,
  "Answer: ...", "#### ..." or "\\boxed{...}",
  or an answer before its label: "(B) is the correct answer", "Option B is correct".
- Programs are not statements: a fenced block that names a language ("```python", any tag but a
  prose one such as "text" or "markdown") and the fake "```output" block of a program the model
  only pretends to run are blanked out ("# The answer is the total" in a program is a comment).
- Run-on text is cut off: after a statement, a line that starts a new "Question:", "Q:",
  "Problem:", "User:" (a question the model invented) or an "```output" block and everything
  after it are ignored. An output block with no statement before it cuts nothing: code, its fake
  output, then "The answer is \\boxed{60}." concludes with that statement.
- Template echoes are not statements: one inside a quotation after "finish/end with", or one whose
  answer is a placeholder ("(X)", "N", "\\( N \\)", "TEXT"), as small models repeat the prompt's
  instruction. A box never closed ("\\boxed{4" at the token limit) answers nothing.
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
    r"|^[\s*_#>]*(?:final\s+)?answer[\s*_]*(?:[:\-]|$)|\banswer\s*:|####"
    # "Answer is (A)." without its article, at the start of a sentence or line.
    r"|(?:^|(?<=[.!?])\s)[\s*_#>]*answer\s+(?:is|would\s+be|should\s+be|must\s+be|will\s+be)\b\s*:?",
    re.IGNORECASE | re.MULTILINE,
)
_BOXED = re.compile(r"\\boxed\s*\{")
# An echoed instruction: 'Then finish with "The answer is Yes." or "The answer is No."', to its line's end.
_ECHO = re.compile(r"(?:finish|end|conclude|answer)\w*\s+(?:it\s+)?with\s*[\"“'`][^\n]*", re.IGNORECASE)
_PLACEHOLDER = re.compile(
    r"(?:[\s*_\"“”'`$]|\\[()])*(?:\(?X\)?|N|TEXT|ANSWER|\.\.\.|_+|\[[^\]]*\]|\{[^}]*\}|<[^>]*>)(?:[\s.*_\"“”'`$]|\\[()])*",
)
# The prompt's letter placeholder with an option's text after it: "(X) a thermometer".
_FILLED_LETTER_PLACEHOLDER = re.compile(r"^[\s*_]*\(X\)\s+(?=\S)")
# Run-on text: a question the model invented (or an output block, found with the fenced blocks below).
_RUN_ON = re.compile(
    r"^[\s*#>]*(?:question|q|problem|exercise|user|human|instruction)\s*\d*\s*[:.]|<\|im_start\|>",
    re.IGNORECASE | re.MULTILINE,
)
# A fenced block's opening line, "```python" (its tag, if any, names the language), at a line's start.
_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,})[ \t]*(?P<tag>[A-Za-z][\w+#-]*)?[^\n]*", re.MULTILINE)
# Tags of fenced blocks that hold the model's own prose; any other tag is a program or its output.
_PROSE_TAGS = frozenset({"", "text", "txt", "plain", "plaintext", "markdown", "md", "latex", "tex", "math"})
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

# An answer placed before its label: "(B) is the correct answer.", "..., carbon dioxide is the
# answer.", "Option B is correct." (a bare "is correct" only after an option: "Mars's orbit is
# correct" is working). The label ends its clause: "Option A is correct in saying ..." is working.
_LABEL_AFTER = re.compile(
    r"\s+(?:is|are)\s+(?:the\s+)?(?:(?P<label>(?:correct|right|final|best)\s+(?:answer|option|choice)|answer)"
    r"|(?:correct|right)(?:\s+one)?)\b"
    r"(?=[\s*_]*(?:[.!,;:)\n]|$|\s+(?:because|since|as|here|to\s+(?:this|the)\s+question)\b))",
    re.IGNORECASE,
)
_CLAUSE_BREAK = re.compile(r"[.!?](?=\s)|[\n,;:—]")
# How the clause before such a label may start without being the answer: "So", "we see that".
_LEAD_IN = re.compile(r"[\s*_]*(?:(?:so|thus|therefore|hence|then|clearly|and|overall|[^,;:]*\bthat)\b[\s,]*)*", re.I)
# Clauses that are not answers: a pronoun ("This is the correct answer"), a question, a negation.
_NOT_AN_ANSWER = re.compile(
    r"^(?:this|that|it|which|what|who|there|here|each|every|none|neither|one|mine|ours)\b"
    r"|\?|\b(?:not|if|whether|why|how)\b|n't\b",
    re.IGNORECASE,
)
_OPTION_SUBJECT = re.compile(
    r"(?:(?:both|either)\s+)?(?:\([A-Za-z]\)|(?:option|choice)s?\s+\(?[A-Za-z]\)?|[A-Z])(?=\s|$)", re.IGNORECASE
)
_LONGEST_SUBJECT = 8  # words


@dataclass(frozen=True)
class Statement:
    # The answer phrase, unwrapped of markdown and LaTeX ("(B) Mars", "72 clips", "valid").
    phrase: str
    # Character offset in the completion where the statement ends: after the math or bold span
    # it is in and its closing punctuation.
    end: int
    # "statement", "boxed" or "answer_first" ("(B) is the correct answer"): the statement's form.
    form: str


def answer_region(completion: str) -> str:
    """The completion as the grader reads it: its programs and their fake output blanked out (same
    length, line breaks kept, so offsets still point into the completion), up to the run-on text
    after its first statement: a question the model invented, or an output block. An output block
    before any statement (a template echo is none) cuts nothing: a statement after it is the
    completion's conclusion."""
    return _region_and_statements(completion)[0]


def _region_and_statements(completion: str) -> tuple[str, list[tuple[int, Statement]]]:
    """answer_region and (where it starts, statement) of each statement in it: the statements of
    the whole text serve as they are unless a cut shortens it."""
    blocks = _program_blocks(completion)
    text = _blank(completion, blocks)
    found = _statements_in(text)
    if not found:
        return text, found
    first = found[0][0]
    run_on = _RUN_ON.search(text, first)
    cuts = [start for start, _, output in blocks if output and start >= first]
    cuts += [run_on.start()] if run_on else []
    if not cuts:
        return text, found
    region = text[: min(cuts)]
    return region, _statements_in(region)


def _program_blocks(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, whether it is an output block) of every fenced block that is a program or its
    output, from its opening fence line to its closing fence (or the text's end, when cut off)."""
    blocks, position = [], 0
    while opening := _FENCE.search(text, position):
        closing = re.compile(rf"`{{{len(opening['fence'])},}}[ \t]*$", re.MULTILINE).search(text, opening.end())
        end = closing.end() if closing else len(text)
        tag = (opening["tag"] or "").lower()
        if tag not in _PROSE_TAGS:
            blocks.append((opening.start(), end, tag == "output"))
        position = end
    return blocks


def _blank(text: str, blocks: list[tuple[int, int, bool]]) -> str:
    for start, end, _ in blocks:
        text = text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]
    return text


def answer_statements(completion: str) -> list[Statement]:
    """Every answer statement of the completion that is not a template echo, in order."""
    return [statement for _, statement in _region_and_statements(completion)[1]]


def _statements_in(region: str) -> list[tuple[int, Statement]]:
    """(where it starts, statement) of every statement of the region that is not a template echo."""
    echoes = [echo.span() for echo in _ECHO.finditer(region)]
    candidates = [(start, *_phrase(region, phrase_at, form), form) for start, phrase_at, form in _statements(region)]
    candidates += _answers_before_label(region)
    found = []
    for start, phrase, end, form in sorted(candidates, key=lambda s: s[0]):
        if any(echo_start < start < echo_end for echo_start, echo_end in echoes):
            continue
        if not _PLACEHOLDER.fullmatch(phrase):
            found.append((start, Statement(unwrap(_FILLED_LETTER_PLACEHOLDER.sub("", phrase)), end, form)))
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


def _answers_before_label(region: str) -> list[tuple[int, str, int, str]]:
    """(start, answer phrase, end, form) of every statement that puts its answer before its label:
    the clause before "is the correct answer", without its lead-in ("So", "we see that")."""
    found = []
    for label in _LABEL_AFTER.finditer(region):
        clause = _CLAUSE_BREAK.split(region[: label.start()])[-1]
        subject = clause[_LEAD_IN.match(clause).end() :]
        answer = unwrap(subject)
        if not answer or _NOT_AN_ANSWER.search(answer) or len(answer.split()) > _LONGEST_SUBJECT:
            continue
        if label.group("label") is None and not _OPTION_SUBJECT.match(answer):
            continue
        found.append((label.start() - len(subject), subject, _statement_end(region, label.end()), "answer_first"))
    return found


def _box_follows(region: str, position: int, boxes: set[int]) -> bool:
    gap = re.match(r"(?:[\s:$*_]|\\[(\[])*", region[position:])
    return position + gap.end() in boxes


def _phrase(region: str, start: int, form: str) -> tuple[str, int]:
    if form == "boxed":
        end = _closing_brace(region, start)
        if end == len(region):
            # A box never closed (cut off at the token limit: "\\boxed{4") answers nothing.
            return "", end
        return region[start:end], _statement_end(region, end + 1)
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
