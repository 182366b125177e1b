"""SIGTERM or Ctrl-C while the vLLM engine runs: the job shuts its engine down and leaves no
process behind, and no checkpoint that a resume would trust."""

import os
import signal
import subprocess
import time

import psutil
import pytest

from conftest import EMREASON, REPO
from emreason import checkpoint

pytestmark = pytest.mark.slow


def wait_for_line(process: subprocess.Popen, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        if text in line:
            return
        assert time.monotonic() < deadline, f"no '{text}' line within {timeout} s"
    pytest.fail(f"the job exited (code {process.wait()}) before logging '{text}'")


def session_processes(session: int) -> list[psutil.Process]:
    """The live processes of a session: the job and everything it started, orphans included."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, ProcessLookupError):
            pass
    return found


def sigint_at_its_default() -> None:
    """A terminal's foreground job takes Ctrl-C; a job started in the background by a
    non-interactive shell (`make test &`, some CI runners) inherits SIGINT ignored, and Python
    then leaves it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_with_sigterm(job: subprocess.Popen) -> None:
    job.send_signal(signal.SIGTERM)  # `kill PID`, a cluster's preemption


def stop_with_ctrl_c(job: subprocess.Popen) -> None:
    os.killpg(job.pid, signal.SIGINT)  # a terminal sends it to the whole foreground group


@pytest.mark.parametrize("stop", [stop_with_sigterm, stop_with_ctrl_c], ids=["SIGTERM", "Ctrl-C"])
def test_a_stopped_job_leaves_no_engine_or_worker_running(tmp_path, stop):
    job = subprocess.Popen(
        [EMREASON, "experiment=tiny", "logger.mode=disabled", f"hydra.run.dir={tmp_path}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=sigint_at_its_default,
    )
    try:
        # The engine has started and is evaluating the baseline. On the CPU its core runs in
        # the job's process (generator.engine_in_process); whatever it started is in the tree.
        wait_for_line(job, "EM iteration 0: evaluation", timeout=600)
        tree = psutil.Process(job.pid).children(recursive=True)

        stop(job)
        output = job.communicate(timeout=120)[0]
        assert job.returncode != 0, output[-3000:]
        _, alive = psutil.wait_procs(tree, timeout=30)
        assert not alive, f"still running after the job exited: {alive}"
        assert not session_processes(job.pid)
        assert checkpoint.latest(tmp_path) is None
    finally:
        for process in session_processes(job.pid):
            process.kill()
