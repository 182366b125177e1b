"""Test-time accuracy on held-out questions, from the unhinted prompt: greedy decoding, and
optionally k samples per question (self-consistency maj@k and pass@k)."""

import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from statsmodels.stats.inter_rater import cohens_kappa

from emreason.chat import ChatPrompts
from emreason.data.example import Example
from emreason.data.grading import canonical
from emreason.generation.completion import Generator
from emreason.samplers.base import Proposer, Rationale
from emreason.study_stats import Interval, seed_stratified_interval


@dataclass
class Evaluation:
    # Share of the questions answered correctly.
    accuracy: float
    # Share of the questions answered with no parseable answer (counted as wrong in accuracy).
    unparseable_rate: float
    # Mean answer length in tokens.
    mean_tokens: float
    # Questions whose prompt's middle was cut to fit the engine (generator.on_long_prompt=truncate).
    prompts_truncated: int = 0
    # Questions left unanswered because their prompt was too long (generator.on_long_prompt=skip);
    # counted as wrong in accuracy, not as unparseable.
    questions_skipped: int = 0
    # The graded answers, one per question not skipped.
    rationales: list[Rationale] = field(default_factory=list)
    # Share of the questions given the commonest answer: 1.0 is the same answer to every
    # question, a collapse that no accuracy near chance reveals by itself.
    top_answer_share: float = 0.0
    # Accuracy of always giving the commonest gold answer of these questions: what a collapse
    # onto one answer can score by luck.
    constant_answer_accuracy: float = 0.0
    # Cohen's kappa of the answers against the gold answers: accuracy beyond what the two
    # answer distributions agree by chance. 0 for a constant answer or answers unrelated to
    # the question, whatever their accuracy; None when undefined (one gold answer, given always).
    answer_kappa: float | None = None


def answer_counts(examples: list[Example], answers: list[str | None]) -> Counter:
    """How often each answer was given to `examples`, counted in the grader's canonical form
    ("5" and "5.0" one answer); None counts the questions without an answer."""
    return Counter(
        None if answer is None else canonical(answer, example.answer_kind)
        for example, answer in zip(examples, answers, strict=True)
    )


def answer_kappa(examples: list[Example], answers: list[str | None], correct: list[bool]) -> float | None:
    """Cohen's kappa (statsmodels) between the gold answers of `examples` and the extracted
    answers to them (None: no answer, or the question was skipped), graded `correct`. Answers
    are compared in the grader's canonical form ("True" is "yes"); a correct answer is its gold's
    category ("1/2" for gold 0.5), and no answer is one more category."""
    golds = [canonical(example.answer, example.answer_kind) for example in examples]
    said = [
        "no answer" if answer is None else gold if right else canonical(answer, example.answer_kind)
        for example, gold, answer, right in zip(examples, golds, answers, correct, strict=True)
    ]
    categories = {c: i for i, c in enumerate(sorted(set(golds) | set(said)))}
    table = np.zeros((len(categories), len(categories)))
    for gold, answer in zip(golds, said):
        table[categories[gold], categories[answer]] += 1
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # Its standard errors are undefined for degenerate tables; only kappa is used.
        warnings.simplefilter("ignore", RuntimeWarning)
        kappa = float(cohens_kappa(table).kappa)
    return None if np.isnan(kappa) else kappa


def evaluate(
    generator: Generator, prompts: ChatPrompts, examples: list[Example], max_new_tokens: int
) -> Evaluation:
    answers_per_question = Proposer(generator, prompts, max_new_tokens).propose(
        examples, hint=False, n=1, temperature=0.0
    )
    answers = [answer for answers in answers_per_question for answer in answers]
    count = len(examples)
    return Evaluation(
        accuracy=sum(a.correct for a in answers) / count,
        unparseable_rate=sum(a.answer is None for a in answers) / count,
        mean_tokens=sum(len(a.completion.token_ids) for a in answers) / max(len(answers), 1),
        prompts_truncated=sum(a.prompt_truncated for a in answers),
        questions_skipped=count - len(answers),
        rationales=answers,
        top_answer_share=max(
            (n for answer, n in answer_counts([a.example for a in answers], [a.answer for a in answers]).items() if answer is not None),
            default=0,
        ) / count,
        constant_answer_accuracy=max(Counter(e.answer for e in examples).values(), default=0) / count,
        answer_kappa=answer_kappa(
            examples,
            [found[0].answer if found else None for found in answers_per_question],
            [bool(found) and found[0].correct for found in answers_per_question],
        ),
    )


def accuracy_change(examples: list[Example], before: dict[str, bool], after: list[Rationale]) -> Interval:
    """Accuracy after minus accuracy before on the same questions, with its 95% bootstrap
    interval over the questions (emreason/study_stats.py): a change whose interval holds 0 is
    within what other test questions would give. before: correct or not by example id; a
    question missing from either (skipped as too long) counts as wrong there."""
    now = {r.example.id: r.correct for r in after}
    return seed_stratified_interval([[float(now.get(e.id, False)) - float(before.get(e.id, False)) for e in examples]])


@dataclass
class SampledEvaluation:
    # Self-consistency: share of questions whose most frequent answer among k samples is correct.
    majority_accuracy: float
    # Share of questions with at least one correct answer among k samples.
    pass_rate: float


def majority_vote(answers: list[Rationale]) -> Rationale | None:
    """A rationale giving the most frequent parseable answer (ties: the answer given first);
    None when no answer parses. Answers are counted in the grader's canonical form, so "5" and
    "5.0" are one answer."""
    voted = [a for a in answers if a.answer is not None]
    forms = [canonical(a.answer, a.example.answer_kind) for a in voted]
    if not forms:
        return None
    counts = Counter(forms)
    winner = max(counts, key=counts.get)  # max keeps the first of equal counts
    return voted[forms.index(winner)]


def evaluate_sampled(
    generator: Generator, prompts: ChatPrompts, examples: list[Example], max_new_tokens: int, k: int, temperature: float
) -> SampledEvaluation:
    """maj@k and pass@k: k samples per question from the unhinted prompt at `temperature`.
    A question whose prompt was skipped as too long counts as wrong in both."""
    samples = Proposer(generator, prompts, max_new_tokens).propose(examples, hint=False, n=k, temperature=temperature)
    votes = [majority_vote(answers) for answers in samples]
    return SampledEvaluation(
        majority_accuracy=sum(v is not None and v.correct for v in votes) / len(examples),
        pass_rate=sum(any(a.correct for a in answers) for answers in samples) / len(examples),
    )
