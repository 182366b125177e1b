"""The study's statistics against answers known in closed form (docs/study.md)."""

import math

import numpy as np
import pytest

from emreason.study_stats import (
    Comparison,
    Interval,
    Verdict,
    compare,
    equivalence_verdict,
    mcnemar_p_value,
    seed_stratified_interval,
    verdict,
    wilcoxon_p_value,
)


def outcomes(correct: int, total: int) -> np.ndarray:
    """0/1 outcomes of `total` questions, `correct` of them right, in a seeded order."""
    values = np.zeros(total)
    values[:correct] = 1
    return np.random.default_rng(total + correct).permutation(values)


def normal_half_width(per_seed: list[np.ndarray]) -> float:
    """1.96 standard errors of the mean over seeds of the seeds' means (seeds independent)."""
    variance = sum(np.var(values) / len(values) for values in per_seed) / len(per_seed) ** 2
    return 1.96 * math.sqrt(variance)


def test_one_seed_interval_matches_the_normal_approximation():
    values = outcomes(120, 400)
    interval = seed_stratified_interval([values])
    assert interval.estimate == pytest.approx(0.3)
    assert interval.low < 0.3 < interval.high
    assert interval.half_width == pytest.approx(normal_half_width([values]), rel=0.1)  # ±0.045


def test_seeds_are_strata_with_their_own_sizes():
    per_seed = [outcomes(60, 200), outcomes(150, 300), outcomes(20, 100)]
    interval = seed_stratified_interval(per_seed)
    # Mean of the seeds' accuracies (0.3, 0.5, 0.2), not of the pooled questions (230/600).
    assert interval.estimate == pytest.approx(1 / 3)
    assert interval.half_width == pytest.approx(normal_half_width(per_seed), rel=0.1)


def test_more_questions_narrow_the_interval_as_one_over_root_n():
    narrow = seed_stratified_interval([outcomes(300, 1600)])
    wide = seed_stratified_interval([outcomes(75, 400)])
    assert wide.half_width / narrow.half_width == pytest.approx(2, rel=0.15)


def test_constant_outcomes_give_a_zero_width_interval():
    assert seed_stratified_interval([np.ones(50), np.ones(30)]) == Interval(1.0, 1.0, 1.0, 0.95)


def test_a_seed_without_questions_is_an_error():
    with pytest.raises(ValueError, match="at least one question"):
        seed_stratified_interval([np.ones(5), np.array([])])


def test_paired_difference_recovers_a_known_difference_with_a_paired_width():
    """Arm B answers the 120 questions arm A answers plus 30 more, out of 300, in each of 3 seeds:
    B − A is 0.1 exactly, and its interval is the width of 30 discordant questions in 900, far
    narrower than two independent accuracies of 0.4 and 0.5 would give."""
    rng = np.random.default_rng(0)
    a_per_seed, b_per_seed = [], []
    for _ in range(3):
        order = rng.permutation(300)
        a, b = np.zeros(300), np.zeros(300)
        a[order[:120]] = 1
        b[order[:150]] = 1
        a_per_seed.append(a)
        b_per_seed.append(b)
    result = compare("B", "A", b_per_seed, a_per_seed, binary=True)
    assert result.interval.estimate == pytest.approx(0.1)
    assert result.interval.low > 0
    paired = normal_half_width([b - a for a, b in zip(a_per_seed, b_per_seed)])  # ≈ 0.020
    unpaired = 1.96 * math.sqrt((0.4 * 0.6 + 0.5 * 0.5) / 900)  # ≈ 0.046
    assert result.interval.half_width == pytest.approx(paired, rel=0.15)
    assert result.interval.half_width < unpaired / 2
    # 90 discordant pairs, all in B's favour: p = 2 / 2**90.
    assert result.p_value == pytest.approx(2 * 0.5**90)
    assert result.refutation.level == 0.95


def test_mcnemar_exact_p_value_in_closed_form():
    # Discordant pairs: 1 question only the first arm answers, 5 only the second; 4 both answer.
    better = np.array([1] * 4 + [1] + [0] * 5 + [0] * 10)
    worse = np.array([1] * 4 + [0] + [1] * 5 + [0] * 10)
    # Two-sided binomial(6, 1/2) tail of 1 success: 2 * (1 + 6) / 64.
    assert mcnemar_p_value(better, worse) == pytest.approx(14 / 64)
    assert mcnemar_p_value(worse, better) == pytest.approx(14 / 64)
    assert mcnemar_p_value(better, better) == pytest.approx(1.0)


def test_wilcoxon_p_value_in_closed_form():
    # 10 distinct positive differences: exact two-sided p = 2 / 2**10.
    assert wilcoxon_p_value(np.arange(1, 11)) == pytest.approx(2 / 2**10)
    assert wilcoxon_p_value(np.zeros(7)) == 1.0


def test_lengths_compare_with_wilcoxon():
    shorter = [np.array([10.0, 12, 8, 9, 15, 11]), np.array([7.0, 9, 14, 10])]
    longer = [values + np.arange(1, len(values) + 1) for values in shorter]
    result = compare("other", "pps", longer, shorter, binary=False)
    assert result.interval.estimate == pytest.approx((3.5 + 2.5) / 2)
    assert result.interval.low > 0
    # Pooled differences 1..6, 1..4: ties, so scipy's normal approximation; still well below 0.05.
    assert result.p_value < 0.05


def test_arms_must_answer_the_same_questions():
    with pytest.raises(ValueError, match="same questions"):
        compare("a", "b", [np.ones(3)], [np.ones(4)], binary=True)


def part(low: float, high: float, refutation_high: float | None = None) -> Comparison:
    estimate = (low + high) / 2
    refutation_high = high + 0.01 if refutation_high is None else refutation_high
    return Comparison(
        "a", "b", Interval(estimate, low, high, 0.95), 0.5, Interval(estimate, low - 0.01, refutation_high, 0.975)
    )


@pytest.mark.parametrize(
    "parts, expected",
    [
        ([part(0.01, 0.09)], Verdict.held),
        ([part(0.01, 0.09), part(0.02, 0.05)], Verdict.held),
        # One part not shown: the claim (all parts) is not shown either.
        ([part(0.01, 0.09), part(-0.02, 0.05)], Verdict.inconclusive),
        ([part(-0.09, -0.02)], Verdict.refuted),
        ([part(0.01, 0.09), part(-0.09, -0.02)], Verdict.refuted),
        # Below 0 at 95%, but not at the Bonferroni level of a two-part claim.
        ([part(0.01, 0.09), part(-0.06, -0.005, refutation_high=0.002)], Verdict.inconclusive),
        ([part(-0.04, 0.04)], Verdict.inconclusive),
    ],
)
def test_verdict(parts, expected):
    assert verdict(parts) is expected


def test_verdict_on_constructed_outcomes():
    """From outcomes to verdict: a clear gain holds, a clear loss refutes, a tie is inconclusive."""
    base = [outcomes(60, 200) for _ in range(3)]
    gain = [np.maximum(b, outcomes(40, 200)) for b in base]  # b plus some questions
    loss = [b * outcomes(150, 200) for b in base]  # b minus some questions
    assert verdict([compare("gain", "base", gain, base, binary=True)]) is Verdict.held
    assert verdict([compare("loss", "base", loss, base, binary=True)]) is Verdict.refuted
    assert verdict([compare("same", "base", base, base, binary=True)]) is Verdict.inconclusive
    two_parts = [compare("gain", "base", gain, base, binary=True, parts=2)] * 2
    assert two_parts[0].refutation.level == pytest.approx(0.975)
    assert two_parts[0].refutation.high - two_parts[0].refutation.low > two_parts[0].interval.high - two_parts[0].interval.low


def test_verdict_needs_parts():
    with pytest.raises(ValueError):
        verdict([])


@pytest.mark.parametrize(
    "parts, expected",
    [
        ([part(-0.03, 0.04)], Verdict.held),
        # Within the margin at 95% only if the whole interval is.
        ([part(-0.03, 0.06)], Verdict.inconclusive),
        ([part(0.07, 0.12)], Verdict.refuted),
        ([part(-0.14, -0.07)], Verdict.refuted),
        # Outside at 95%, not at the Bonferroni level.
        ([part(0.052, 0.12)], Verdict.inconclusive),
    ],
)
def test_equivalence_verdict_within_a_margin(parts, expected):
    assert equivalence_verdict(parts, margin=0.05) is expected


def test_equivalence_on_constructed_outcomes():
    base = [outcomes(60, 200) for _ in range(3)]
    assert equivalence_verdict([compare("same", "base", base, base, binary=True)], 0.05) is Verdict.held
    gain = [np.maximum(b, outcomes(100, 200)) for b in base]
    assert equivalence_verdict([compare("gain", "base", gain, base, binary=True)], 0.05) is Verdict.refuted
