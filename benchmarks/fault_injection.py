"""Kill a real tiny job with SIGKILL at random points of its E-step, M-step, weight sync and
checkpoint write, resume it each time, and compare the result with an uninterrupted run.

    python -m benchmarks.fault_injection --kills 20      # `make faults`: the long version

The job runs once uninterrupted first, and the harness times each of its phases, from the
phase's log line ("EM iteration 1: M-step 1") to the next phase's ("EM iteration 1: weight
sync"; an iteration ends with "EM iteration 1: done"). Each kill waits for the log line of the
phase it aims at, then a random delay within the first AIM of that phase's shortest length
measured so far on this machine (in the uninterrupted run or in a run killed later), so that
kills land inside their phase on a fast CPU and on a slow one. A kill that lands in another
phase all the same (the job ran faster than ever before) is counted under that one.

The kills of an episode go through the phases of iteration 1, then of iteration 2, and so on,
so that resumes start from every checkpoint. An episode is one run directory, rerun after every
kill until the job finishes; episodes repeat until enough kills landed. kill -9 gives the job
no chance to stop its vLLM engine process: whatever of the job's process tree survives is
killed here and counted. The summary is one JSON object, printed and saved as
OUT/summary.json.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from emreason.metrics_file import read_metrics, without_timings

REPO = Path(__file__).resolve().parent.parent
# The `emreason` command of this checkout (the console script imports the installed package,
# which may be another checkout's).
EMREASON = [sys.executable, "-m", "emreason.cli"]
JOB = ["experiment=tiny", "sampler=pps", "logger.mode=disabled"]
# The phases a kill can aim at.
PHASES = ["E-step", "M-step", "weight sync", "checkpoint"]
# A kill comes within this share of its phase's shortest measured length; the rest is margin
# for a run faster than those measured (on 2 shared cores, one E-step took 0.65 of another's).
AIM = 0.5
MARKER = "EM iteration "
# Seconds the killed job's other processes get to stop on their own (the M-step processes stop
# when the job dies, PR_SET_PDEATHSIG) before they count as orphans.
ORPHAN_GRACE_S = 60


@dataclass
class Summary:
    kills: int = 0
    # Phase the job had last announced when it was killed ("E-step", "evaluation", ...) -> kills.
    kills_by_phase: dict = field(default_factory=dict)
    # Kills that landed in another phase than the one they aimed at.
    kills_off_target: int = 0
    # Runs that finished before their kill came.
    runs_finished_before_kill: int = 0
    # Kills after which processes of the job outlived it by ORPHAN_GRACE_S and were killed here.
    kills_leaving_orphans: int = 0
    orphans_killed: int = 0
    episodes: int = 0
    # Episodes whose metrics rows are not exactly iterations 0..N, once each.
    episodes_with_lost_or_doubled_iterations: int = 0
    # Episodes whose final metrics (minus wall-clock seconds) differ from the uninterrupted run's.
    episodes_differing_from_uninterrupted: int = 0
    failed_runs: list = field(default_factory=list)
    # Seconds each phase of the uninterrupted run took, as the harness saw its log lines.
    uninterrupted_phase_seconds: dict = field(default_factory=dict)


class Run:
    """One `emreason` process in its own session, its output watched for phase lines."""

    def __init__(self, run_dir: Path, overrides: list[str]):
        self.log = (run_dir.parent / f"{run_dir.name}.log").open("a")
        self.process = subprocess.Popen(
            [*EMREASON, *overrides, f"hydra.run.dir={run_dir}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        # Each phase the job announced ("1: M-step 1") with the time.monotonic() its line came.
        self.phases_seen: list[tuple[str, float]] = []
        self.phase_started = threading.Condition()
        self.reader = threading.Thread(target=self._read_output, daemon=True)
        self.reader.start()

    def _read_output(self) -> None:
        for line in self.process.stdout:
            self.log.write(line)
            if MARKER in line and ": " in line.split(MARKER, 1)[1]:
                with self.phase_started:
                    self.phases_seen.append((line.split(MARKER, 1)[1].strip(), time.monotonic()))
                    self.phase_started.notify_all()
        self.log.close()

    def wait_for_phase(self, phase: str) -> str | None:
        """Block until the job announces phase ("1: M-step", or a numbered one such as TRICE's
        "1: M-step 2"); the phase as announced, None if the job's output ended first."""
        with self.phase_started:
            while (seen := first_announcing(phase, [p for p, _ in self.phases_seen])) is None:
                if not self.reader.is_alive():
                    return None
                self.phase_started.wait(timeout=1.0)
        return seen

    def phase_seconds(self) -> dict[str, float]:
        """Seconds from each announced phase's line to the next one's (the last phase, which the
        job finished or not, has none)."""
        return {phase: after - at for (phase, at), (_, after) in zip(self.phases_seen, self.phases_seen[1:])}

    def kill(self) -> int:
        """SIGKILL the job's main process; then kill and count what of its tree outlives it by
        ORPHAN_GRACE_S, and read the output the job wrote before it died."""
        main = psutil.Process(self.process.pid)
        tree = main.children(recursive=True)
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        session = [p for p in psutil.process_iter() if _session(p) == self.process.pid]
        orphans = _outliving(list({p.pid: p for p in tree + session}.values()), ORPHAN_GRACE_S)
        for process in orphans:
            process.kill()
        psutil.wait_procs(orphans, timeout=30)
        self.reader.join(timeout=30)
        return len(orphans)


def first_announcing(phase: str, announced) -> str | None:
    """The first of the announced phases that is phase itself or a numbered one of it."""
    return next((seen for seen in announced if seen == phase or seen.startswith(f"{phase} ")), None)


def _outliving(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """The processes still alive after waiting up to `seconds` for them all to exit."""
    deadline = time.monotonic() + seconds
    while (alive := [p for p in processes if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.5)
    return alive


def _session(process: psutil.Process) -> int | None:
    try:
        return os.getsid(process.pid)
    except OSError:
        return None


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def episode(
    run_dir: Path,
    overrides: list[str],
    targets: list[tuple[int, str]],
    shortest: dict[str, float],
    rng: random.Random,
    summary: Summary,
) -> None:
    """Rerun the job in run_dir, killing it once in each target (iteration, phase), until it
    finishes. shortest holds each announced phase's shortest length measured so far; the phases
    a killed run went through update it."""
    for iteration, phase in targets:
        run = Run(run_dir, overrides)
        aimed = run.wait_for_phase(f"{iteration}: {phase}")
        if aimed is not None:
            time.sleep(rng.uniform(0, AIM * shortest[aimed]))
        if aimed is None or run.process.poll() is not None:
            summary.runs_finished_before_kill += 1
            return finish_episode(run, run_dir, summary)
        orphans = run.kill()
        for finished, seconds in run.phase_seconds().items():
            shortest[finished] = min(seconds, shortest.get(finished, seconds))
        landed = run.phases_seen[-1][0] if run.phases_seen else "0: engine start"
        summary.kills += 1
        # Counted by phase, not by step: TRICE's "M-step 2" is an M-step.
        landed_phase = re.sub(r" \d+$", "", landed.split(": ", 1)[1])
        summary.kills_by_phase[landed_phase] = summary.kills_by_phase.get(landed_phase, 0) + 1
        summary.kills_off_target += landed != aimed
        summary.kills_leaving_orphans += orphans > 0
        summary.orphans_killed += orphans
        print(f"kill {summary.kills}: aimed at {iteration}: {phase}, landed in {landed}; {orphans} orphans killed", flush=True)
    finish_episode(Run(run_dir, overrides), run_dir, summary)


def finish_episode(run: Run, run_dir: Path, summary: Summary) -> None:
    """Let the last run end, then compare the episode's metrics with the uninterrupted run's."""
    if run.process.wait() != 0:
        summary.failed_runs.append(f"{run_dir}: exit {run.process.returncode}")
    summary.episodes += 1
    rows = read_metrics(run_dir) if (run_dir / "metrics.jsonl").exists() else []
    iterations = [row["iteration"] for row in rows]
    reference = read_metrics(run_dir.parent / "uninterrupted")
    if iterations != list(range(len(reference))):
        summary.episodes_with_lost_or_doubled_iterations += 1
        print(f"{run_dir}: iterations {iterations}", flush=True)
    if without_timings(rows) != without_timings(reference):
        summary.episodes_differing_from_uninterrupted += 1
        print(f"{run_dir}: metrics differ from the uninterrupted run", flush=True)


def run_uninterrupted(out: Path, overrides: list[str], targets: list[tuple[int, str]]) -> dict[str, float]:
    """Run the job once without kills; the seconds each of its phases took. Stops the harness if
    the run failed or never announced a phase a kill is to aim at."""
    run = Run(out / "uninterrupted", overrides)
    if run.process.wait() != 0:
        sys.exit(f"the uninterrupted run failed; see {out / 'uninterrupted.log'}")
    run.reader.join()
    seconds = run.phase_seconds()
    for iteration, phase in targets:
        if first_announcing(f"{iteration}: {phase}", seconds) is None:
            sys.exit(f"the uninterrupted run never entered {iteration}: {phase}; see {out / 'uninterrupted.log'}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs in all (at least)")
    parser.add_argument("--kills-per-episode", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=2, help="EM iterations of the tiny job")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill delays")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=PHASES, help="phases to kill in, in turn")
    parser.add_argument("--out", type=Path, required=True, help="folder for the run directories and logs")
    parser.add_argument("overrides", nargs="*", help="more overrides of the tiny job, e.g. optimizer.processes=2")
    args = parser.parse_args()

    overrides = [*JOB, f"em.iterations={args.iterations}", *args.overrides]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary = Summary()
    phases = len(args.phases)
    every_target = [(iteration, phase) for iteration in range(1, args.iterations + 1) for phase in args.phases]
    shortest = run_uninterrupted(args.out, overrides, every_target)
    summary.uninterrupted_phase_seconds = {phase: round(seconds, 2) for phase, seconds in shortest.items()}
    print(f"phases of the uninterrupted run (s): {json.dumps(summary.uninterrupted_phase_seconds)}", flush=True)
    rng = random.Random(args.seed)
    while summary.kills < args.kills:
        run_dir = args.out / f"episode-{summary.episodes}"
        kills = min(args.kills_per_episode, args.kills - summary.kills)
        targets = [(1 + i // phases % args.iterations, args.phases[i % phases]) for i in range(kills)]
        episode(run_dir, overrides, targets, shortest, rng, summary)
    result = json.dumps({**asdict(summary), "seconds": round(time.perf_counter() - started)})
    (args.out / "summary.json").write_text(result + "\n")
    print(result)


if __name__ == "__main__":
    main()
