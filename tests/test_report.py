"""`emreason-report`: plots, HTML page and summary table of a sweep's runs."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY_SWEEP_SAMPLERS
from emreason.report import PLOTS, create_workspace, main

REPORT = str(Path(sys.executable).parent / "emreason-report")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MODEL = "SmolLM2-135M-Instruct"


def metrics_rows(sampler: str, seed: int, iterations: int = 2) -> list[dict]:
    """Plausible metrics.jsonl rows; values differ by sampler, seed and iteration."""
    offset = {"rs": 0.0, "pps": 0.08}[sampler] + 0.03 * seed
    rows = [{"iteration": 0, "test_accuracy": 0.25 + 0.01 * seed, "test_unparseable_rate": 0.1,
             "test_mean_tokens": 40.5, "eval_s": 12.0}]
    for iteration in range(1, iterations + 1):
        kept = 3 * iteration + seed
        rows.append({
            "iteration": iteration,
            "test_accuracy": 0.25 + 0.05 * iteration + offset,
            "test_unparseable_rate": 0.1 - 0.02 * iteration,
            "test_mean_tokens": 41.0 + iteration,
            "acceptance_rate": 0.2 + 0.1 * iteration + offset,
            "rationales_kept": kept,
            "questions_with_rationale": 0.5,
            # Null when no rationale was accepted: plots skip it.
            "mean_rationale_tokens": None if (sampler, seed, iteration) == ("rs", 1, 1) else 50.0 + 5 * iteration + 10 * seed,
            "tokens_generated": 2000 + 100 * iteration,
            "tokens_per_accepted_rationale": (2000 + 100 * iteration) / kept,
            "e_step_s": 30.0, "m_step_s": 5.0, "sync_s": 0.5, "eval_s": 12.0,
            # The pps runs also logged the sampled evaluation (em.test_samples > 0).
            **({"test_maj_at_k": 0.3 + offset, "test_pass_at_k": 0.6 + offset} if sampler == "pps" else {}),
        })
    return rows


def write_job(job_dir: Path, sampler: str, seed: int, dataset: str = "arc_easy", rows: list[dict] | None = None) -> list[dict]:
    rows = metrics_rows(sampler, seed) if rows is None else rows
    (job_dir / ".hydra").mkdir(parents=True)
    config = {
        "dataset": {"name": dataset, "local_path": "${data_dir}/arc", "test_size": 200},
        "model": {"name": MODEL, "source": "embedded"},
        "sampler": {"name": sampler, "temperature": 1.0},
        "em": {"iterations": 2, "questions_per_iteration": 64},
        "seed": seed,
        "data_dir": "${oc.env:EMREASON_DATA_DIR,../shared/data}",
    }
    (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def write_sweep(sweep_dir: Path, dataset: str = "arc_easy") -> dict[tuple[str, int], list[dict]]:
    """A multirun of 2 samplers x 2 seeds, as Hydra lays it out."""
    jobs = [(sampler, seed) for sampler in ["rs", "pps"] for seed in [0, 1]]
    written = {job: write_job(sweep_dir / str(number), *job, dataset=dataset) for number, job in enumerate(jobs)}
    (sweep_dir / "multirun.yaml").write_text("hydra: {mode: MULTIRUN}\n")
    return written


def mean_std(values: list[float]) -> str:
    """A summary.md cell: mean ± sample std, 4 decimals (std 0 for one value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {std:.4f}"


def summary_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    """summary.md's first table (the finished runs' mean ± std), keyed by (dataset, sampler)."""
    text = path.read_text()
    lines = [line for line in text[text.index("|"):].split("\n\n")[0].splitlines()]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
    return {(row["dataset"], row["sampler"]): row for row in rows}


def assert_valid_pngs(out: Path) -> None:
    for file_name, *_ in PLOTS:
        data = (out / file_name).read_bytes()
        assert data.startswith(PNG_MAGIC), file_name
        assert len(data) > 10_000, f"{file_name} is suspiciously small ({len(data)} bytes)"


def test_report_of_a_multirun_directory(tmp_path, capsys):
    written = write_sweep(tmp_path / "sweep")
    main([str(tmp_path / "sweep")])
    out = tmp_path / "sweep" / "report"
    assert "4 runs" in capsys.readouterr().out

    assert_valid_pngs(out)
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(out / "accuracy.png").shape
    assert width > 400 and height > 300

    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(PLOTS)
    assert "<script" not in page and "<link" not in page and 'src="http' not in page
    for job in ["0", "1", "2", "3"]:
        assert f"<td>{job}</td>" in page  # the run list

    table = summary_rows(out / "summary.md")
    assert set(table) == {("arc_easy", "rs"), ("arc_easy", "pps")}
    for sampler in ["rs", "pps"]:
        runs = [written[sampler, seed] for seed in [0, 1]]
        row = table["arc_easy", sampler]
        assert row["seeds"] == "2" and row["model"] == MODEL and row["final iteration"] == "2"
        finals = [rows[-1]["test_accuracy"] for rows in runs]
        baselines = [rows[0]["test_accuracy"] for rows in runs]
        assert row["final accuracy"] == mean_std(finals)
        assert row["baseline accuracy"] == mean_std(baselines)
    assert table["arc_easy", "pps"]["final accuracy"] != table["arc_easy", "rs"]["final accuracy"]
    pps_runs = [written["pps", seed][-1] for seed in [0, 1]]
    assert table["arc_easy", "pps"]["final maj@k"] == mean_std([row["test_maj_at_k"] for row in pps_runs])
    assert table["arc_easy", "pps"]["final pass@k"] == mean_std([row["test_pass_at_k"] for row in pps_runs])
    assert table["arc_easy", "rs"]["final maj@k"] == table["arc_easy", "rs"]["final pass@k"] == "-"


def test_several_multiruns_in_one_folder(tmp_path):
    """Sweeps on two datasets under one folder: one report, one panel per dataset."""
    write_sweep(tmp_path / "2025-06-01" / "10-00-00", dataset="arc_easy")
    write_sweep(tmp_path / "2025-06-01" / "11-00-00", dataset="gsm8k")
    out = tmp_path / "elsewhere"
    main([str(tmp_path), "--out", str(out)])

    assert set(summary_rows(out / "summary.md")) == {(d, s) for d in ["arc_easy", "gsm8k"] for s in ["rs", "pps"]}
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(out / "accuracy.png").shape
    assert width > 1.8 * height  # two panels side by side
    assert "2025-06-01/11-00-00/3" in (out / "report.html").read_text()


def test_unfinished_runs_are_listed_and_left_out_of_the_averages(tmp_path, capsys):
    """A run that has not done all its iterations (killed, failed, still running) is neither
    averaged nor plotted as if it were final; the table and the run list say it is unfinished."""
    done = write_job(tmp_path / "0", "rs", 0)
    write_job(tmp_path / "1", "rs", 1, rows=metrics_rows("rs", 1, iterations=1))
    main([str(tmp_path)])
    assert "2 runs (1 unfinished" in capsys.readouterr().out
    summary = tmp_path / "report" / "summary.md"
    row = summary_rows(summary)["arc_easy", "rs"]
    assert row["seeds"] == "1" and row["final iteration"] == "2"
    assert row["final accuracy"] == mean_std([done[-1]["test_accuracy"]])
    assert row["baseline accuracy"] == mean_std([done[0]["test_accuracy"]])
    unfinished = summary.read_text().split("## Unfinished runs", 1)[1]
    assert "| 1 | rs | arc_easy |" in unfinished and "unfinished: iteration 1 of 2" in unfinished
    assert "| 0 |" not in unfinished
    assert "<td>unfinished: iteration 1 of 2</td>" in (tmp_path / "report" / "report.html").read_text()


def test_a_killed_job_is_read_as_far_as_its_checkpoint_with_the_config_it_ran_with(tmp_path):
    """A job killed after logging iteration 2 but before checkpointing it redoes iteration 2
    when resumed: the report reads its history up to the checkpoint. Its .hydra/ holds the
    config of the last command line (`resume=DIR` composes the job's own config only later);
    the checkpoint's config is the job's."""
    from emreason import checkpoint

    done = write_job(tmp_path / "0", "pps", 0)
    killed = tmp_path / "1"
    rows = write_job(killed, "rs", 1)  # .hydra/config.yaml of the command `emreason resume=...`: sampler rs
    config = {**yaml.safe_load((killed / ".hydra" / "config.yaml").read_text()), "sampler": {"name": "pps"}}
    (killed / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows[:2]))
    checkpoint.commit(killed, checkpoint.staging_dir(killed), iteration=1, sampler_state={}, config=config, overrides=[])
    (killed / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))

    main([str(tmp_path)])
    summary = tmp_path / "report" / "summary.md"
    assert set(summary_rows(summary)) == {("arc_easy", "pps")}
    assert summary_rows(summary)["arc_easy", "pps"]["final accuracy"] == mean_std([done[-1]["test_accuracy"]])
    unfinished = summary.read_text().split("## Unfinished runs", 1)[1]
    assert "| 1 | pps | arc_easy |" in unfinished and "unfinished: iteration 1 of 2" in unfinished
    assert f"{rows[1]['test_accuracy']:.4f}" in unfinished


def test_malformed_metrics_line_names_file_and_line(tmp_path):
    write_sweep(tmp_path)
    metrics = tmp_path / "2" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]  # a truncated write
    metrics.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as raised:
        main([str(tmp_path)])
    assert f"{metrics}, line 2" in str(raised.value)
    assert not (tmp_path / "report").exists()


def test_row_without_iteration_is_an_error(tmp_path):
    write_job(tmp_path, "rs", 0, rows=[{"test_accuracy": 0.5}])
    with pytest.raises(SystemExit, match="metrics.jsonl, row 1: expected a JSON object with 'iteration'"):
        main([str(tmp_path)])


def test_no_runs_names_the_directory(tmp_path):
    (tmp_path / "sweep" / "0").mkdir(parents=True)
    with pytest.raises(SystemExit) as raised:
        main([str(tmp_path / "sweep")])
    assert "no runs found" in str(raised.value) and str(tmp_path / "sweep") in str(raised.value)


def test_job_dir_without_config_is_an_error(tmp_path):
    write_job(tmp_path / "0", "rs", 0)
    (tmp_path / "0" / ".hydra" / "config.yaml").unlink()
    with pytest.raises(SystemExit, match="no .hydra/config.yaml"):
        main([str(tmp_path)])


@pytest.mark.parametrize("wandb_mode", [None, "offline"])
def test_wandb_group_without_wandb_access_points_to_the_directory(tmp_path, monkeypatch, wandb_mode):
    """A source that is no directory is a W&B group; with no API key (or W&B offline)
    the error says to pass the multirun directory instead."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for variable, value in [("HOME", tmp_path), ("NETRC", tmp_path / "netrc"), ("WANDB_CONFIG_DIR", tmp_path / "wandb-config")]:
        monkeypatch.setenv(variable, str(value))
    if wandb_mode:
        monkeypatch.setenv("WANDB_MODE", wandb_mode)
    else:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.raises(SystemExit) as raised:
        main(["cli-12-00-00"])
    message = str(raised.value)
    assert "'cli-12-00-00' is not a directory" in message and "pass the multirun directory" in message


class FakeWandbRun:
    def __init__(self, name: str, sampler: str, seed: int, rows: list[dict]):
        self.name = name
        self.config = {
            "sampler": {"name": sampler}, "dataset": {"name": "arc_easy"}, "model": {"name": MODEL}, "seed": seed,
            "em": {"iterations": 2},
        }
        self.rows = rows

    def scan_history(self):
        # W&B history rows: W&B's own keys, and a step that logged only the rationale table.
        yield {"_step": 1, "rationales": {"_type": "table-file"}}
        for row in reversed(self.rows):
            yield {"_step": row["iteration"], "_runtime": 3.0, **row}


class FakeWandbApi:
    default_entity = "me"

    def __init__(self, runs: list[FakeWandbRun]):
        self.fake_runs = runs
        self.queries = []

    def runs(self, path: str, filters: dict):
        self.queries.append((path, filters))
        return self.fake_runs


def test_report_of_a_wandb_group(tmp_path, monkeypatch):
    """The W&B path with a stand-in for wandb.Api: runs of the group, their config and history."""
    written = {(sampler, seed): metrics_rows(sampler, seed) for sampler in ["rs", "pps"] for seed in [0, 1]}
    api = FakeWandbApi([FakeWandbRun(f"run-{sampler}-{seed}", sampler, seed, rows) for (sampler, seed), rows in written.items()])
    monkeypatch.setattr("emreason.report.wandb_api", lambda: api)
    monkeypatch.chdir(tmp_path)
    main(["cli-12-00-00", "--project", "emreason"])
    assert api.queries == [("me/emreason", {"group": "cli-12-00-00"})]
    out = tmp_path / "report-cli-12-00-00"
    assert_valid_pngs(out)
    row = summary_rows(out / "summary.md")["arc_easy", "pps"]
    finals = [written["pps", seed][-1]["test_accuracy"] for seed in [0, 1]]
    assert row["seeds"] == "2" and row["final iteration"] == "2"
    assert row["final accuracy"] == mean_std(finals)
    assert "run-pps-1" in (out / "report.html").read_text()


def test_workspace_needs_a_wandb_group(tmp_path):
    write_sweep(tmp_path)
    with pytest.raises(SystemExit, match="--workspace needs a W&B group"):
        main([str(tmp_path), "--workspace"])


def test_workspace_groups_the_group_runs_by_sampler(monkeypatch):
    """The workspace spec, checked without saving it to W&B."""
    import wandb_workspaces.workspaces as ws

    saved = []

    class Saved:
        url = "https://wandb.ai/entity/emreason?nw=view"

    monkeypatch.setattr(ws.Workspace, "save", lambda self: saved.append(self) or Saved())
    assert create_workspace("entity", "emreason", "cli-12-00-00") == Saved.url
    (workspace,) = saved
    run_set = workspace._to_model().spec.section.run_sets[0]
    assert [(key.section, key.name) for key in run_set.grouping] == [("run", "jobType")]  # job type = sampler
    assert "cli-12-00-00" in str(run_set.filters)
    assert [panel.y for panel in workspace.sections[0].panels] == [[key] for _, key, _, _ in PLOTS]


@pytest.mark.slow
def test_report_of_a_real_sweep(tiny_multirun):
    sweep_dir, _ = tiny_multirun
    result = subprocess.run([REPORT, str(sweep_dir)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = sweep_dir / "report"
    assert_valid_pngs(out)
    # The study section adds its accuracy, length and per-iteration plots (the runs have per-question grades).
    assert (out / "report.html").read_text().count("data:image/png;base64,") == len(PLOTS) + 3

    table = summary_rows(out / "summary.md")
    assert len(table) == len(TINY_SWEEP_SAMPLERS)
    for job, sampler in enumerate(TINY_SWEEP_SAMPLERS):
        rows = [json.loads(line) for line in (sweep_dir / str(job) / "metrics.jsonl").read_text().splitlines()]
        (row,) = [row for (_, row_sampler), row in table.items() if row_sampler == sampler]
        assert row["seeds"] == "1"
        assert row["final iteration"] == str(rows[-1]["iteration"])
        assert row["final accuracy"] == mean_std([rows[-1]["test_accuracy"]])
        assert row["baseline accuracy"] == mean_std([rows[0]["test_accuracy"]])
        # The tiny test set's accuracies (multiples of 1/16) are shown exactly.
        assert float(row["final accuracy"].split("±")[0]) == rows[-1]["test_accuracy"]
