"""The sampler study's statistics (docs/study.md): accuracy with a 95% interval, paired
differences between arms with p-values, and the verdict on each claim.

Inputs are per-question outcomes, one array per seed: outcome[q] of test question q (1/0 for
correct/wrong, or a rationale's length). Every arm run with a seed answers that seed's test sample,
so two arms' arrays of one seed are aligned question by question.

Intervals are scipy.stats.bootstrap's BCa intervals of the mean over seeds of each seed's mean,
with the questions of each seed resampled independently (a bootstrap stratified by seed: each
seed keeps its own sample size). A difference between two arms is bootstrapped on the
per-question differences, so the pairing on the same questions is kept. The interval holds the
trained models fixed: it measures how much the figure would move with other test questions,
not with other training runs (the per-seed figures beside it show that spread).
p-values: statsmodels' exact McNemar test for correct/wrong outcomes, scipy's Wilcoxon
signed-rank test for lengths, both on the (seed, question) pairs pooled over seeds.
"""

from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

CONFIDENCE = 0.95
RESAMPLES = 9999


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval [low, high] at `level` (e.g. 0.95)."""

    estimate: float
    low: float
    high: float
    level: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Comparison:
    """Outcome of arm `better` minus outcome of arm `worse` on the same questions, with the
    p-value of no difference; `refutation` is the interval at the level a claim of several
    parts uses to call one part refuted (see `verdict`)."""

    better: str
    worse: str
    interval: Interval
    p_value: float
    refutation: Interval


def _mean_over_seeds(*per_seed: np.ndarray, axis: int = -1) -> np.ndarray:
    # A sum, not np.mean of a list: the jackknife passes one seed's resamples beside the
    # others' whole samples, and only broadcasting lines them up.
    return sum(np.mean(sample, axis=axis) for sample in per_seed) / len(per_seed)


def seed_stratified_interval(per_seed: list, level: float = CONFIDENCE, seed: int = 0) -> Interval:
    """The mean over seeds of each seed's mean outcome, with its bootstrap interval.
    per_seed: one 1-D array per seed (lengths may differ). Raises ValueError when a seed has no
    question. Constant data (every answer right, say) gives a zero-width interval."""
    samples = [np.asarray(values, dtype=float) for values in per_seed]
    if not samples or any(len(sample) == 0 for sample in samples):
        raise ValueError("every seed needs at least one question")
    estimate = float(_mean_over_seeds(*samples))
    if all(np.ptp(sample) == 0 for sample in samples):
        return Interval(estimate, estimate, estimate, level)
    result = stats.bootstrap(
        samples, _mean_over_seeds, vectorized=True, paired=False, confidence_level=level,
        n_resamples=RESAMPLES, method="BCa", rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    if not np.isfinite([low, high]).all():  # BCa undefined (degenerate jackknife): percentiles
        low, high = np.quantile(result.bootstrap_distribution, [(1 - level) / 2, (1 + level) / 2])
    return Interval(estimate, float(low), float(high), level)


def mcnemar_p_value(better: np.ndarray, worse: np.ndarray) -> float:
    """Exact McNemar test (binomial on the discordant pairs) of two arms' 0/1 outcomes on the
    same questions."""
    better, worse = np.asarray(better, dtype=bool), np.asarray(worse, dtype=bool)
    table = [[np.sum(better & worse), np.sum(better & ~worse)], [np.sum(~better & worse), np.sum(~better & ~worse)]]
    return float(mcnemar(table, exact=True).pvalue)


def wilcoxon_p_value(differences: np.ndarray) -> float:
    """Wilcoxon signed-rank test of paired differences (lengths); 1 when all are zero."""
    differences = np.asarray(differences, dtype=float)
    if not np.any(differences):
        return 1.0
    return float(stats.wilcoxon(differences).pvalue)


def compare(
    better: str, worse: str, better_per_seed: list, worse_per_seed: list, *, binary: bool, parts: int = 1
) -> Comparison:
    """better − worse on the same questions of each seed. binary: 0/1 outcomes (McNemar),
    else lengths (Wilcoxon). parts: how many comparisons the claim this one belongs to makes
    (the refutation interval is at the Bonferroni level 1 − 0.05 / parts)."""
    if [len(b) for b in better_per_seed] != [len(w) for w in worse_per_seed]:
        raise ValueError(f"{better} and {worse} do not answer the same questions of each seed")
    differences = [np.asarray(b, dtype=float) - np.asarray(w, dtype=float) for b, w in zip(better_per_seed, worse_per_seed)]
    if binary:
        p_value = mcnemar_p_value(np.concatenate(better_per_seed), np.concatenate(worse_per_seed))
    else:
        p_value = wilcoxon_p_value(np.concatenate(differences))
    return Comparison(
        better, worse, seed_stratified_interval(differences), p_value,
        seed_stratified_interval(differences, level=1 - (1 - CONFIDENCE) / parts),
    )


class Verdict(str, Enum):
    held = "held"
    refuted = "refuted"
    inconclusive = "inconclusive"


def verdict(parts: list[Comparison]) -> Verdict:
    """A claim that every part's difference (better − worse) is positive.
    held: every part's 95% interval lies above 0 (an intersection-union test: level 5% with no
    correction). refuted: some part's Bonferroni interval (level 1 − 0.05 / parts) lies below 0,
    the opposite shown. inconclusive otherwise: the intervals are too wide to tell.
    Raises ValueError for a claim without parts."""
    if not parts:
        raise ValueError("a claim needs at least one comparison")
    if all(part.interval.low > 0 for part in parts):
        return Verdict.held
    if any(part.refutation.high < 0 for part in parts):
        return Verdict.refuted
    return Verdict.inconclusive


def equivalence_verdict(parts: list[Comparison], margin: float) -> Verdict:
    """A claim that every part's difference lies within ±margin (the arms are within a few
    points of each other). held: every part's 95% interval lies inside (−margin, +margin) (two
    one-sided tests at 2.5% each, no correction across parts: an intersection-union test).
    refuted: some part's Bonferroni interval lies wholly outside [−margin, +margin].
    inconclusive otherwise. Raises ValueError for a claim without parts."""
    if not parts:
        raise ValueError("a claim needs at least one comparison")
    if all(-margin < part.interval.low and part.interval.high < margin for part in parts):
        return Verdict.held
    if any(part.refutation.low > margin or part.refutation.high < -margin for part in parts):
        return Verdict.refuted
    return Verdict.inconclusive
