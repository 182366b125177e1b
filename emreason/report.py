"""`emreason-report`: compare the samplers of a sweep in plots, an HTML page and a table.

    emreason-report multirun/2025-06-01/12-00-00        # a multirun directory, or a folder of them
    emreason-report cli-12-00-00 --entity me            # a W&B group (runs logged online or synced)

Writes into --out (default <multirun dir>/report, or ./report-<group>): one PNG per metric
(mean over seeds with a ± one standard deviation band, one panel per dataset), `summary.md`
(final accuracy per sampler and dataset) and a self-contained `report.html` with all of it.
Only finished runs (all their EM iterations done) are plotted and averaged; unfinished ones
(killed, failed or still running) are listed as such. Runs with per-question grades (a run
directory's rationales/) add the study's section: intervals, paired differences, verdicts,
lengths and cost (emreason/study_report.py).
"""

import argparse
import base64
import html
import os
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from emreason import checkpoint, study_report
from emreason import metrics_file
from emreason.metrics_file import METRICS_FILE
from emreason.run_dirs import MULTIRUN_FILE

# One PNG per entry: (file name, metric key, y-axis label, title).
PLOTS = [
    ("accuracy.png", "test_accuracy", "test accuracy", "Test accuracy (iteration 0 = zero-shot baseline)"),
    ("acceptance_rate.png", "acceptance_rate", "accepted / proposed", "E-step acceptance rate"),
    ("rationale_length.png", "mean_rationale_tokens", "tokens", "Mean length of accepted rationales"),
    ("tokens_per_rationale.png", "tokens_per_accepted_rationale", "tokens generated", "Tokens generated per accepted rationale"),
]


class ReportError(Exception):
    """Bad input, explained for the user."""


@dataclass
class Run:
    """One EM job: what it ran and its metric rows (one per iteration, in order)."""

    name: str
    sampler: str
    dataset: str
    model: str
    seed: int
    # The rows of the iterations done (a job's checkpointed history), in order.
    rows: list[dict]
    # The EM iterations the job is configured to run (em.iterations).
    iterations: int
    # The job directory; None for a run read from W&B.
    directory: Path | None = None

    @property
    def finished(self) -> bool:
        return self.rows[-1]["iteration"] >= self.iterations

    @property
    def status(self) -> str:
        return "finished" if self.finished else f"unfinished: iteration {self.rows[-1]['iteration']} of {self.iterations}"


@dataclass
class Stat:
    mean: float
    std: float  # sample standard deviation over seeds; 0 for a single seed
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f}"


def stat(values: list[float]) -> Stat:
    return Stat(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


def checked_row(row: object, where: str) -> dict:
    if not isinstance(row, dict) or "iteration" not in row or "test_accuracy" not in row:
        raise ReportError(f"{where}: expected a JSON object with 'iteration' and 'test_accuracy'")
    return row


def read_metrics(path: Path) -> list[dict]:
    try:
        rows = metrics_file.read_rows(path)
    except metrics_file.MalformedRowError as error:
        raise ReportError(str(error)) from None
    return sorted((checked_row(row, f"{path}, row {number}") for number, row in enumerate(rows, 1)), key=lambda row: row["iteration"])


def sampler_label(sampler: dict) -> str:
    """The sampler's name; TRICE without its control variate is an arm of its own."""
    return sampler["name"] + ("_no_cv" if sampler.get("control_variate") is False else "")


def run_from_config(name: str, config: dict, rows: list[dict], where: str, directory: Path | None = None) -> Run:
    try:
        return Run(
            name, sampler_label(config["sampler"]), config["dataset"]["name"], config["model"]["name"],
            int(config["seed"]), rows, int(config["em"]["iterations"]), directory,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ReportError(f"{where}: config lacks sampler.name, dataset.name, model.name, seed or em.iterations ({error!r})") from None


def job_config_path(job_dir: Path, found: Path | None) -> Path:
    """The config the job ran with: its checkpoint's (a job continued with `resume=DIR` has in
    .hydra/ only the config of that command line), else Hydra's."""
    return found / "config.yaml" if found is not None else job_dir / ".hydra" / "config.yaml"


def runs_from_directory(root: Path) -> list[Run]:
    """Every job directory under root (itself included) that has a metrics.jsonl."""
    runs = []
    for metrics_path in sorted(root.rglob(METRICS_FILE)):
        job_dir = metrics_path.parent
        if job_dir.name in checkpoint.FOLDERS:  # the copy a job's checkpoint keeps
            continue
        found = checkpoint.latest(job_dir)
        config_path = job_config_path(job_dir, found)
        if not config_path.is_file():
            raise ReportError(f"{job_dir} has a {METRICS_FILE} but no .hydra/config.yaml")
        rows = read_metrics(metrics_path)
        if found is not None:  # a row of an iteration after the checkpoint is redone on a resume
            done = checkpoint.load(found).iteration
            rows = [row for row in rows if row["iteration"] <= done]
        name = job_dir.name if job_dir == root else str(job_dir.relative_to(root))
        if rows:
            runs.append(run_from_config(name, OmegaConf.to_container(OmegaConf.load(config_path)), rows, str(config_path), job_dir))
        else:
            print(f"emreason-report: skipping {job_dir}: its {METRICS_FILE} is empty", file=sys.stderr)
    if not runs:
        raise ReportError(f"no runs found: no job directory with a non-empty {METRICS_FILE} under {root}")
    return runs


def planned_jobs(sweep: Path) -> int | None:
    """How many jobs the sweep in this folder was started to run: the product of the numbers of
    values of its swept keys (the config's hydra.sweeper.params and the command line's, from the
    multirun.yaml Hydra wrote); None for a folder that is no sweep."""
    path = sweep / MULTIRUN_FILE
    if not path.is_file():
        return None
    saved = OmegaConf.load(path)
    params = OmegaConf.select(saved, "hydra.sweeper.params") or {}
    command_line = OmegaConf.select(saved, "hydra.overrides.task") or []
    jobs = 1
    for override in OverridesParser.create().parse_overrides([*(f"{k}={v}" for k, v in params.items()), *command_line]):
        if override.is_sweep_override():
            jobs *= len(list(override.sweep_string_iterator()))
    return jobs


def wandb_api():
    import wandb

    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        raise ReportError(f"W&B is {os.environ['WANDB_MODE']} (WANDB_MODE), so runs cannot be read from W&B")
    try:
        return wandb.Api()
    except wandb.errors.Error as error:
        raise ReportError(f"cannot reach W&B: {error}") from None


def runs_from_wandb(api, path: str, group: str) -> list[Run]:
    import requests
    import wandb

    try:
        runs = []
        for run in api.runs(path, filters={"group": group}):
            rows = [checked_row(row, f"W&B run {run.name}") for row in run.scan_history() if "iteration" in row]
            rows.sort(key=lambda row: row["iteration"])
            runs.append(run_from_config(run.name, run.config, rows, f"W&B run {run.name}"))
    except (wandb.errors.Error, requests.RequestException) as error:
        raise ReportError(f"cannot read W&B group {group!r} of {path}: {error}") from None
    runs = [run for run in runs if run.rows]
    if not runs:
        raise ReportError(f"no runs with metrics found in W&B group {group!r} of {path}")
    return runs


def create_workspace(entity: str, project: str, group: str) -> str:
    """A W&B workspace showing the group's runs grouped by sampler (the runs' job type)."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    workspace = ws.Workspace(
        entity=entity,
        project=project,
        name=f"emreason samplers {group}",
        sections=[ws.Section(name="Sampler comparison", is_open=True, panels=[
            wr.LinePlot(title=title, x="Step", y=[key]) for _, key, _, title in PLOTS
        ])],
        runset_settings=ws.RunsetSettings(filters=f"Metric('Group') == {group!r}", groupby=[ws.Metric("JobType")]),
    )
    return workspace.save().url


def arms(runs: list[Run]) -> dict[tuple[str, str, str], list[Run]]:
    """Runs by (dataset, model, sampler): the seeds of one arm are averaged."""
    grouped = defaultdict(list)
    for run in runs:
        grouped[(run.dataset, run.model, run.sampler)].append(run)
    return dict(sorted(grouped.items()))


def curve(runs: list[Run], key: str) -> list[tuple[int, Stat]]:
    by_iteration = defaultdict(list)
    for run in runs:
        for row in run.rows:
            if row.get(key) is not None:
                by_iteration[row["iteration"]].append(row[key])
    return [(iteration, stat(values)) for iteration, values in sorted(by_iteration.items())]


def plot(runs: list[Run], key: str, ylabel: str, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    by_arm = arms(runs)
    datasets = sorted({dataset for dataset, _, _ in by_arm})
    several_models = len({model for _, model, _ in by_arm}) > 1
    label = {arm: f"{arm[2]} · {arm[1]}" if several_models else arm[2] for arm in by_arm}  # sampler (· model)
    colors = {name: plt.get_cmap("tab10")(index % 10) for index, name in enumerate(sorted(set(label.values())))}
    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        iterations = set()
        for arm, arm_runs in by_arm.items():
            points = curve(arm_runs, key) if arm[0] == dataset else []
            if not points:
                continue
            iterations.update(iteration for iteration, _ in points)
            x = [iteration for iteration, _ in points]
            mean = [s.mean for _, s in points]
            std = [s.std for _, s in points]
            color = colors[label[arm]]
            axis.errorbar(x, mean, yerr=std, color=color, marker="o", capsize=4, label=f"{label[arm]} (n={len(arm_runs)})")
            axis.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], color=color, alpha=0.2)
        axis.set(title=dataset, xlabel="EM iteration", ylabel=ylabel)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.grid(alpha=0.3)
        if key == "test_accuracy":
            axis.set_ylim(0, 1)  # a few points of accuracy must not look like a cliff
        if iterations:
            axis.set_xlim(min(iterations) - 0.5, max(iterations) + 0.5)
            axis.legend(title="sampler (seeds)")
        else:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
    figure.suptitle(f"{title}\nmean over seeds, band and bars: ± 1 std")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def summary_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    header = ["dataset", "model", "sampler", "seeds", "baseline accuracy", "final accuracy", "final maj@k", "final pass@k", "final iteration"]
    rows = []
    for (dataset, model, sampler), arm_runs in arms(runs).items():
        baselines = [run.rows[0]["test_accuracy"] for run in arm_runs if run.rows[0]["iteration"] == 0]
        final = stat([run.rows[-1]["test_accuracy"] for run in arm_runs])
        # Sampled evaluation (em.test_samples = k > 0) of the runs that logged it.
        sampled = [final_stat(arm_runs, key) for key in ("test_maj_at_k", "test_pass_at_k")]
        last_iterations = sorted({str(run.rows[-1]["iteration"]) for run in arm_runs}, key=int)
        rows.append([dataset, model, sampler, str(final.n), str(stat(baselines)) if baselines else "-", str(final), *sampled, ", ".join(last_iterations)])
    return header, rows


def final_stat(runs: list[Run], key: str) -> str:
    values = [run.rows[-1][key] for run in runs if key in run.rows[-1]]
    return str(stat(values)) if values else "-"


def run_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "sampler", "dataset", "model", "seed", "status", "last accuracy"]
    ordered = sorted(runs, key=lambda run: (run.dataset, run.model, run.sampler, run.seed, run.name))
    return header, [
        [run.name, run.sampler, run.dataset, run.model, str(run.seed), run.status, f"{run.rows[-1]['test_accuracy']:.4f}"]
        for run in ordered
    ]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines) + "\n"


def html_table(header: list[str], rows: list[list[str]]) -> str:
    def cells(tag: str, values: list[str]) -> str:
        return "".join(f"<{tag}>{html.escape(value)}</{tag}>" for value in values)

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><tr>{cells('th', header)}</tr>{body}</table>"


def image_html(title: str, path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return f'<h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" src="data:image/png;base64,{encoded}">'


def study_text(section: study_report.Section) -> tuple[str, str]:
    """The study section as markdown and as HTML."""
    notes = [section.note] if section.note else []
    md = "".join(f"\n{note}\n" for note in notes) + "".join(
        f"\n## {table.title}\n\n{table.note}\n\n{markdown(table.header, table.rows)}" for table in section.tables
    )
    page = "".join(f"<p>{html.escape(note)}</p>" for note in notes) + "".join(
        f"<h3>{html.escape(table.title)}</h3><p>{html.escape(table.note)}</p>{html_table(table.header, table.rows)}"
        for table in section.tables
    ) + "".join(image_html(title, path) for title, path in section.plots)
    return md, page


def write_report(runs: list[Run], source: str, out: Path) -> Path:
    finished = [run for run in runs if run.finished]
    unfinished = [run for run in runs if not run.finished]
    if not finished:
        raise ReportError(f"no finished run yet in {source}; unfinished: " + ", ".join(f"{run.name} ({run.status})" for run in runs))
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for file_name, key, ylabel, title in PLOTS:
        plot(finished, key, ylabel, title, out / file_name)
        images.append(image_html(title, out / file_name))
    try:
        study_md, study_html = study_text(study_report.section(finished, out))
    except study_report.StudyError as error:
        raise ReportError(str(error)) from None
    planned = planned_jobs(Path(source)) if Path(source).is_dir() else None
    if planned is not None and len(finished) < planned:
        study_md = (f"\n**Partial study: {len(finished)} of the {planned} planned jobs have finished.** Every table and "
                    "verdict below is of the finished jobs only; a claim whose arms have not all run is not tested.\n" + study_md)
        study_html = f"<p><strong>Partial study: {len(finished)} of the {planned} planned jobs have finished.</strong></p>" + study_html
    summary = summary_table(finished)
    left_out = f"\n## Unfinished runs (not in the table or the plots)\n\n{markdown(*run_table(unfinished))}" if unfinished else ""
    (out / "summary.md").write_text(
        f"# Sampler comparison: {source}\n\nTest accuracy of the finished runs, mean ± std over seeds (sample std; 0 with one seed).\n"
        f"Final = each run's last EM iteration; baseline = iteration 0 (zero-shot); maj@k and pass@k\n"
        f"from k samples per question (em.test_samples), greedy accuracy otherwise. As the runs logged\n"
        f"them; the study's section below grades every logged answer again with the current grader.\n\n{markdown(*summary)}{left_out}"
        f"\n# The study: intervals and verdicts\n{study_md}"
    )
    page = out / "report.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>emreason report: {html.escape(source)}</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:80em} img{max-width:100%}"
        "table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
        f"</style></head><body><h1>Sampler comparison</h1><p>Source: <code>{html.escape(source)}</code></p>"
        f"<h2>Final test accuracy</h2><p>Finished runs, mean ± std over seeds.</p>{html_table(*summary)}"
        f"<h2>The study: intervals and verdicts</h2>{study_html}"
        f"<h2>Plots</h2>{''.join(images)}<h2>Runs</h2>{html_table(*run_table(runs))}</body></html>"
    )
    return page


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="emreason-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a multirun directory (searched recursively for job dirs), or a W&B group name")
    parser.add_argument("--out", type=Path, help="output directory (default: <multirun dir>/report, or ./report-<group>)")
    parser.add_argument("--entity", help="W&B entity, for a group (default: your API key's default entity)")
    parser.add_argument("--project", default="emreason", help="W&B project, for a group (default: emreason)")
    parser.add_argument("--workspace", action="store_true", help="also save a W&B workspace grouping the group's runs by sampler (needs wandb-workspaces)")
    args = parser.parse_args(argv)
    try:
        if Path(args.source).is_dir():
            if args.workspace:
                raise ReportError("--workspace needs a W&B group, not a directory (sync offline runs first: wandb sync)")
            runs = runs_from_directory(Path(args.source))
            out = args.out or Path(args.source) / "report"
        else:
            try:
                api = wandb_api()
                entity = args.entity or api.default_entity
                runs = runs_from_wandb(api, f"{entity}/{args.project}", args.source)
            except ReportError as error:
                raise ReportError(
                    f"{error}\n{args.source!r} is not a directory, so it was read as a W&B group. "
                    "To report on local runs, pass the multirun directory instead."
                ) from None
            out = args.out or Path(f"report-{args.source}")
            if args.workspace:
                print(f"W&B workspace: {create_workspace(entity, args.project, args.source)}")
        page = write_report(runs, args.source, out)
    except ReportError as error:
        sys.exit(f"emreason-report: {error}")
    unfinished = sum(not run.finished for run in runs)
    print(f"{len(runs)} runs ({unfinished} unfinished, left out of the plots). Report: {page}\nTable: {out / 'summary.md'}")


if __name__ == "__main__":
    main()
