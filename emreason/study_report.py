"""The sampler study's section of `emreason-report` (docs/study.md): per benchmark, each arm's
final test accuracy with its 95% interval, the gains over zero-shot and the differences between
arms as paired intervals with p-values, the verdict on each claim of the study, rationale lengths
and cost. Per-question grades come from each run's rationales/ folder (emreason/rationale_log.py),
graded again with the current grader; runs read from W&B have none, and the section then says so.

An arm is a sampler as the report labels it (TRICE without its control variate is an arm of its
own); the zero-shot arm is the iteration-0 evaluation, one per seed. Runs of one seed answer the
same test questions (the test sample is a function of the seed), which pairs every comparison.
"""

import statistics
import textwrap
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from emreason import rationale_log
from emreason.data.grading import grade
from emreason.evaluation import answer_counts, answer_kappa
from emreason.study_stats import Comparison, Interval, compare, equivalence_verdict, seed_stratified_interval, verdict

ZERO_SHOT = "zero-shot"
SAMPLER_ARMS = ("rs", "star", "pps", "trice", "trice_no_cv")


@dataclass(frozen=True)
class Claim:
    """Claim: outcome(better) − outcome(worse) > 0 for every (better, worse) part, or with a
    margin, |outcome(better) − outcome(worse)| < margin (the arms are equivalent).
    binary: the outcome is test correctness (0/1), else the final rationales' length in words."""

    number: int
    text: str
    binary: bool
    parts: tuple[tuple[str, str], ...]
    margin: float | None = None


# Stated before the study was run (docs/study.md); lengths are oriented other − pps.
CLAIMS = (
    Claim(1, "Every sampler beats the zero-shot baseline", True, tuple((arm, ZERO_SHOT) for arm in SAMPLER_ARMS)),
    Claim(2, "PPS beats STaR and RS-M at equal E-step budget", True, (("pps", "star"), ("pps", "rs"))),
    Claim(3, "PPS rationales are shorter than the others'", False, tuple((arm, "pps") for arm in SAMPLER_ARMS if arm != "pps")),
    Claim(4, "TRICE with the control variate beats TRICE without it, which beats STaR", True, (("trice", "trice_no_cv"), ("trice_no_cv", "star"))),
    Claim(5, "Rejection sampling is within 5 points of TRICE", True, (("rs", "trice"),), margin=0.05),
)


class StudyError(Exception):
    """Runs that cannot be compared, explained for the user."""


@dataclass
class Graded:
    """One evaluation of one run, per test question id: correct or not, and the rationale's
    length in words (whitespace-separated; the log keeps text, not tokens)."""

    correct: dict[str, bool]
    words: dict[str, int]
    # Chance of a uniform guess per question (1 / choices); absent for questions without choices.
    chance: dict[str, float]
    # Cohen's kappa of the answers against the golds (emreason/evaluation.py): 0 for a collapse.
    kappa: float | None
    # The commonest answer given and its share of the questions (None: no answer).
    top_answer: tuple[str | None, float]
    # Accuracy of always giving the commonest gold answer: what a collapse can score by luck.
    constant_answer_accuracy: float = 0.0
    # Shares of the questions with no answer, and with a rationale cut at the token limit.
    no_answer: float = 0.0
    cut_at_limit: float = 0.0


@dataclass
class Table:
    title: str
    note: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    tables: list[Table] = field(default_factory=list)
    plots: list[tuple[str, Path]] = field(default_factory=list)  # (title, PNG file)
    # Why the section is empty, when it is.
    note: str | None = None


def graded(records: list[dict]) -> Graded:
    """The evaluation of the logged completions, graded again with this grader: the jobs of a study
    run over sessions, and a grader fixed in between would otherwise grade its arms differently."""
    grades = [grade(r["completion"], r["example"], r.get("finished", True)) for r in records]
    examples = [r["example"] for r in records]
    answers = [g.answer for g in grades]
    answer, count = answer_counts(examples, answers).most_common(1)[0]
    return Graded(
        {e.id: g.correct for e, g in zip(examples, grades)},
        {r["example"].id: len(r["completion"].split()) for r in records},
        {e.id: 1 / len(e.choices) for e in examples if e.choices},
        answer_kappa(examples, answers, [g.correct for g in grades]),
        (answer, count / len(records)),
        max(Counter(e.answer for e in examples).values()) / len(records),
        sum(a is None for a in answers) / len(records),
        sum(not r.get("finished", True) for r in records) / len(records),
    )


def read_evaluations(run_dir: Path) -> dict[int, Graded]:
    """Every evaluation of a run by iteration; iteration 0 (zero-shot) must be there."""
    evaluations = defaultdict(list)
    for record in rationale_log.read(run_dir, phase="evaluation"):
        evaluations[record["iteration"]].append(record)
    if 0 not in evaluations:
        raise StudyError(f"{run_dir} has no iteration-0 evaluation in {rationale_log.FOLDER}/")
    return {iteration: graded(records) for iteration, records in sorted(evaluations.items())}


@dataclass
class Group:
    """The runs of one benchmark and model: per arm, per seed, the final evaluation, plus the
    metrics rows (for cost) of every run of a sampler arm."""

    final: dict[str, dict[int, Graded]] = field(default_factory=lambda: defaultdict(dict))
    rows: dict[str, list[list[dict]]] = field(default_factory=lambda: defaultdict(list))
    # Per sampler arm, iteration and seed: every evaluation of its runs (the learning curves).
    curves: dict[str, dict[int, dict[int, Graded]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(dict)))


def groups(runs: list) -> dict[tuple[str, str], Group]:
    """runs: report.Run objects with a directory. Two runs of one arm and seed are an error."""
    grouped: dict[tuple[str, str], Group] = defaultdict(Group)
    for run in sorted(runs, key=lambda run: run.name):
        group = grouped[(run.dataset, run.model)]
        if run.seed in group.final[run.sampler]:
            raise StudyError(f"two runs of arm {run.sampler} with seed {run.seed} on {run.dataset}, e.g. {run.name}")
        evaluations = read_evaluations(run.directory)
        group.final[ZERO_SHOT].setdefault(run.seed, evaluations[0])
        group.final[run.sampler][run.seed] = evaluations[max(evaluations)]
        group.rows[run.sampler].append(run.rows)
        for iteration, evaluation in evaluations.items():
            group.curves[run.sampler][iteration][run.seed] = evaluation
    return dict(sorted(grouped.items()))


def paired(group: Group, better: str, worse: str, key: str) -> tuple[list[list[float]], list[list[float]]]:
    """The two arms' outcomes (key: "correct" or "words") on the questions of each seed both ran."""
    better_per_seed, worse_per_seed = [], []
    for seed in sorted(group.final[better].keys() & group.final[worse].keys()):
        b, w = group.final[better][seed], group.final[worse][seed]
        if b.correct.keys() != w.correct.keys():
            raise StudyError(f"{better} and {worse} were evaluated on different test questions with seed {seed}")
        questions = sorted(b.correct)
        better_per_seed.append([float(getattr(b, key)[q]) for q in questions])
        worse_per_seed.append([float(getattr(w, key)[q]) for q in questions])
    return better_per_seed, worse_per_seed


def comparison(group: Group, better: str, worse: str, binary: bool, parts: int = 1) -> Comparison | None:
    """None when the arms share no seed."""
    better_per_seed, worse_per_seed = paired(group, better, worse, "correct" if binary else "words")
    if not better_per_seed:
        return None
    return compare(better, worse, better_per_seed, worse_per_seed, binary=binary, parts=parts)


def ordered_arms(group: Group) -> list[str]:
    known = [ZERO_SHOT, *SAMPLER_ARMS]
    return sorted(group.final, key=lambda arm: (known.index(arm) if arm in known else len(known), arm))


def accuracy(group: Group, arm: str) -> Interval:
    return interval_over_seeds(group.final[arm])


def interval_over_seeds(per_seed: dict[int, Graded]) -> Interval:
    return seed_stratified_interval([[float(c) for c in per_seed[seed].correct.values()] for seed in sorted(per_seed)])


def chance_level(group: Group) -> float | None:
    """Mean over the zero-shot test questions of 1 / choices; None without choices."""
    chances = [c for graded_ in group.final[ZERO_SHOT].values() for c in graded_.chance.values()]
    return sum(chances) / len(chances) if chances else None


def interval_text(interval: Interval, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{interval.estimate:{sign}.3f} [{interval.low:{sign}.3f}, {interval.high:{sign}.3f}]"


def accuracy_table(grouped: dict) -> Table:
    rows = []
    for (dataset, model), group in grouped.items():
        chance = chance_level(group)
        for arm in ordered_arms(group):
            per_seed = [group.final[arm][seed] for seed in sorted(group.final[arm])]
            rows.append([
                dataset, model, arm, str(len(per_seed)), interval_text(accuracy(group, arm)),
                ", ".join(f"{sum(g.correct.values()) / len(g.correct):.3f}" for g in per_seed),
                ", ".join("-" if g.kappa is None else f"{g.kappa:+.3f}" for g in per_seed),
                ", ".join(f"{g.top_answer[0] or 'none'} {g.top_answer[1]:.0%}" for g in per_seed),
                "-" if chance is None else f"{chance:.3f}",
            ])
    return Table(
        "Final test accuracy", "Mean over seeds with its 95% bootstrap interval over the test questions of each seed; "
        "zero-shot = iteration 0. Per seed: each seed's own accuracy (their spread shows the training noise the "
        "interval leaves out), Cohen's kappa of its answers against the golds (0: answers unrelated to the question, "
        "as after a collapse onto one answer, whatever the accuracy; 1: all right) and its commonest answer's share.",
        ["dataset", "model", "arm", "seeds", "accuracy [95% CI]", "per seed", "kappa per seed", "commonest answer", "chance"],
        rows,
    )


def differences_table(grouped: dict) -> Table:
    rows = []
    for (dataset, model), group in grouped.items():
        arms = [arm for arm in ordered_arms(group) if arm != ZERO_SHOT]
        pairs = [(arm, ZERO_SHOT) for arm in arms] + [(a, b) for i, a in enumerate(arms) for b in arms[i + 1:]]
        for better, worse in pairs:
            result = comparison(group, better, worse, binary=True)
            if result is not None:
                rows.append([dataset, model, f"{better} − {worse}", interval_text(result.interval, signed=True), f"{result.p_value:.3g}"])
    return Table(
        "Paired differences in test accuracy", "On the same test questions of each seed; p: exact McNemar test.",
        ["dataset", "model", "difference", "difference [95% CI]", "p"], rows,
    )


def verdict_table(grouped: dict) -> Table:
    rows = []
    for (dataset, model), group in grouped.items():
        for claim in CLAIMS:
            missing = sorted({arm for part in claim.parts for arm in part} - group.final.keys())
            if missing:
                rows.append([str(claim.number), claim.text, dataset, model, "not tested", f"no runs of {', '.join(missing)}"])
                continue
            parts = [comparison(group, b, w, claim.binary, parts=len(claim.parts)) for b, w in claim.parts]
            if None in parts:
                rows.append([str(claim.number), claim.text, dataset, model, "not tested", "arms share no seed"])
                continue
            unit = "" if claim.binary else " words"
            detail = "; ".join(f"{p.better} − {p.worse}: {interval_text(p.interval, signed=True)}{unit}, p={p.p_value:.2g}" for p in parts)
            widest = max(p.interval.half_width for p in parts)
            decided = verdict(parts) if claim.margin is None else equivalence_verdict(parts, claim.margin)
            rows.append([str(claim.number), claim.text, dataset, model, f"{decided.value} (±{widest:.3f}{unit})", detail])
    return Table(
        "Verdicts", "held: every part's 95% interval lies above 0; refuted: some part's interval at the Bonferroni level "
        "(1 − 0.05 / parts) lies below 0; inconclusive: neither, at the interval width shown (the widest part's "
        "half-width). Claim 5 is an equivalence: held when the 95% interval lies within ±0.05, refuted when it lies "
        "wholly outside. Accuracy claims compare final test accuracy; claim 3 compares the final rationales' length in "
        "words on the same test questions (other − pps).",
        ["claim", "statement", "dataset", "model", "verdict", "parts: difference [95% CI], p"], rows,
    )


def cost_table(grouped: dict) -> Table:
    rows = []
    for (dataset, model), group in grouped.items():
        for arm in ordered_arms(group):
            if arm == ZERO_SHOT:
                continue
            runs_rows = group.rows[arm]
            tokens = [sum(r.get("tokens_generated", 0) for r in rows_[1:]) for rows_ in runs_rows]
            kept = [sum(r.get("rationales_kept", 0) for r in rows_[1:]) for rows_ in runs_rows]
            seconds = [sum(r.get(k) or 0 for r in rows_[1:] for k in ("e_step_s", "m_step_s", "sync_s", "eval_s")) for rows_ in runs_rows]
            rows.append([dataset, model, arm, str(len(runs_rows)), f"{statistics.fmean(tokens):.0f}",
                         f"{sum(tokens) / max(sum(kept), 1):.1f}", f"{statistics.fmean(seconds):.0f}"])
    return Table(
        "Cost per arm", "Per run, mean over seeds, EM iterations only (the zero-shot evaluation is shared): tokens the "
        "E-steps generated, tokens generated per kept rationale, wall seconds of E-step + M-step + weight sync + evaluation.",
        ["dataset", "model", "arm", "seeds", "tokens generated", "tokens per kept rationale", "wall seconds"], rows,
    )


def collapse_table(grouped: dict) -> Table:
    """Per arm, what a gain could be made of besides reasoning: answers unrelated to the question
    (kappa, the commonest answer's share against the constant-answer baseline), missing answers
    and rationales cut at the token limit; means over seeds of the final models."""
    rows = []
    for (dataset, model), group in grouped.items():
        for arm in ordered_arms(group):
            finals = list(group.final[arm].values())
            kappas = [g.kappa for g in finals if g.kappa is not None]
            rows.append([
                dataset, model, arm,
                f"{statistics.fmean(kappas):+.3f}" if kappas else "undefined",
                f"{statistics.fmean(g.top_answer[1] for g in finals):.3f}",
                f"{statistics.fmean(g.constant_answer_accuracy for g in finals):.3f}",
                f"{statistics.fmean(g.no_answer for g in finals):.3f}",
                f"{statistics.fmean(g.cut_at_limit for g in finals):.3f}",
            ])
    return Table(
        "Collapse and format per arm", "Final models, mean over seeds: Cohen's kappa of the answers against the golds "
        "(0: unrelated to the question), the commonest answer's share, the accuracy of always giving the commonest "
        "gold answer, the share with no answer and the share cut at the token limit.",
        ["dataset", "model", "arm", "kappa", "commonest answer share", "constant-answer accuracy", "no answer", "cut at limit"],
        rows,
    )


def length_table(grouped: dict) -> Table:
    rows = []
    for (dataset, model), group in grouped.items():
        for arm in ordered_arms(group):
            words = sorted(w for graded_ in group.final[arm].values() for w in graded_.words.values())
            rows.append([dataset, model, arm, f"{sum(words) / len(words):.1f}", str(words[len(words) // 2]), str(words[-1])])
    return Table(
        "Length of the final test rationales (words)", "Greedy answers of the final model to the test questions, all seeds.",
        ["dataset", "model", "arm", "mean", "median", "max"], rows,
    )


def panels(grouped: dict):
    """pyplot, a figure with one panel per (dataset, model), and (axis, (key, group)) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(grouped), figsize=(5 * len(grouped), 4.5), squeeze=False)
    return plt, figure, zip(axes[0], grouped.items())


def save(plt, figure, title: str, path: Path) -> None:
    # About 9 characters of the title per inch of the figure's width.
    figure.suptitle(textwrap.fill(title, int(9 * figure.get_figwidth())))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_accuracy(grouped: dict, path: Path) -> None:
    """Final accuracy per arm with its 95% interval, chance level dashed; the axis spans the
    intervals, so that differences of a few points show."""
    plt, figure, panel_groups = panels(grouped)
    for axis, ((dataset, model), group) in panel_groups:
        arms = ordered_arms(group)
        intervals = [accuracy(group, arm) for arm in arms]
        axis.errorbar(
            range(len(arms)), [i.estimate for i in intervals],
            yerr=[[i.estimate - i.low for i in intervals], [i.high - i.estimate for i in intervals]],
            fmt="o", capsize=5,
        )
        chance = chance_level(group)
        if chance is not None:
            axis.axhline(chance, color="grey", linestyle="--", label=f"chance ({chance:.2f})")
            axis.legend(loc="upper right")
        axis.set(title=f"{dataset} · {model}", ylabel="final test accuracy")
        axis.set_xticks(range(len(arms)), arms, rotation=20)
        axis.grid(axis="y", alpha=0.3)
    save(plt, figure, "Final test accuracy, mean over seeds, 95% bootstrap interval over test questions", path)


def plot_curves(grouped: dict, path: Path) -> None:
    """Test accuracy per EM iteration and arm (iteration 0: zero-shot), 95% intervals."""
    plt, figure, panel_groups = panels(grouped)
    for axis, ((dataset, model), group) in panel_groups:
        arms = [arm for arm in ordered_arms(group) if arm != ZERO_SHOT]
        for offset, arm in enumerate(arms):
            iterations = sorted(group.curves[arm])
            intervals = [interval_over_seeds(group.curves[arm][i]) for i in iterations]
            shifted = [i + (offset - (len(arms) - 1) / 2) * 0.04 for i in iterations]  # side by side
            axis.errorbar(
                shifted, [i.estimate for i in intervals],
                yerr=[[i.estimate - i.low for i in intervals], [i.high - i.estimate for i in intervals]],
                fmt="o-", capsize=3, label=arm,
            )
        axis.set(title=f"{dataset} · {model}", xlabel="EM iteration", ylabel="test accuracy",
                 xticks=sorted({i for arm in arms for i in group.curves[arm]}))
        axis.legend(loc="best")
        axis.grid(axis="y", alpha=0.3)
    save(plt, figure, "Test accuracy per EM iteration, mean over seeds, 95% bootstrap interval", path)


def plot_lengths(grouped: dict, path: Path) -> None:
    """Distribution of the final test rationales' length per arm (box plots)."""
    plt, figure, panel_groups = panels(grouped)
    for axis, ((dataset, model), group) in panel_groups:
        arms = ordered_arms(group)
        words = [[w for graded_ in group.final[arm].values() for w in graded_.words.values()] for arm in arms]
        axis.boxplot(words, tick_labels=arms)
        axis.set(title=f"{dataset} · {model}", ylabel="words", ylim=(0, None))
        axis.tick_params(axis="x", rotation=20)
        axis.grid(axis="y", alpha=0.3)
    save(plt, figure, "Length of the final test rationales, all seeds", path)


def section(runs: list, out: Path) -> Section:
    """The study's tables and plots (written into out) for report.Run objects; a note instead
    when the runs have no per-question grades. Raises StudyError for runs that cannot be paired."""
    with_grades = [run for run in runs if run.directory is not None and (run.directory / rationale_log.FOLDER).is_dir()]
    if not with_grades:
        return Section(note="No per-question grades (no run has a rationales/ folder), so no intervals or verdicts.")
    grouped = groups(with_grades)
    plot_accuracy(grouped, out / "study_accuracy.png")
    plot_lengths(grouped, out / "study_lengths.png")
    plot_curves(grouped, out / "study_curves.png")
    return Section(
        tables=[
            verdict_table(grouped), accuracy_table(grouped), differences_table(grouped), collapse_table(grouped),
            length_table(grouped), cost_table(grouped),
        ],
        plots=[("Final test accuracy with 95% intervals", out / "study_accuracy.png"),
               ("Length of the final test rationales", out / "study_lengths.png"),
               ("Test accuracy per EM iteration", out / "study_curves.png")],
        note=None if len(with_grades) == len(runs) else f"{len(runs) - len(with_grades)} runs without per-question grades are left out.",
    )
