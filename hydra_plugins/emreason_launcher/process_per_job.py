"""A Hydra launcher that runs a multirun's jobs one after another, each in a fresh process:
emreason's default launcher (conf/config.yaml), `hydra/launcher=process_per_job`.

Why: Hydra's basic launcher runs every job in the process that started the sweep, and each EM job
leaves memory there that the next cannot get back (vLLM's and PyTorch's native allocations): the
last iteration of 3 SmolLM2 jobs peaked at 4.92, 5.44 and 6.02 GiB in one process, at 4.92, 4.89
and 4.90 GiB with a process each (docs/performance.md). The joblib launcher runs jobs in worker
processes but reuses them, and both it and submitit's local launcher run jobs side by side, which
on 2 cores slows each vLLM engine many times over. A process per job, one at a time, gives every
job the memory of a first job.
"""

import ctypes
import logging
import multiprocessing
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Sequence

import cloudpickle
from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_joblib_launcher._core import execute_job
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# prctl option: the signal the kernel sends this process when its parent dies.
PR_SET_PDEATHSIG = 1


@dataclass
class ProcessPerJobConf:
    _target_: str = "hydra_plugins.emreason_launcher.process_per_job.ProcessPerJobLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="process_per_job", node=ProcessPerJobConf, provider="emreason")


def stop_with_parent() -> None:
    """Run in each job process first: when the sweep's process dies (SIGKILL, a session's end),
    the job gets SIGTERM and unwinds (emreason.cli stops its vLLM engine) instead of running on
    alone. Linux only; elsewhere nothing."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_pickled(payload: bytes, results: Connection) -> None:
    """A job process's whole life: unpickle the job, run it, send back its JobReturn, end. Both
    travel cloudpickled, as in Hydra's joblib launcher: the standard pickle cannot name the
    undecorated function under @hydra.main (the task function Hydra hands a launcher) nor the
    config classes a JobReturn holds."""
    stop_with_parent()
    function, arguments = cloudpickle.loads(payload)
    results.send_bytes(cloudpickle.dumps(function(*arguments)))


class ProcessPerJobLauncher(Launcher):
    """Runs each job of a multirun in a new process (spawned, so it shares no state with the
    sweep's), waiting for it to end before starting the next. As with Hydra's basic launcher, a
    job's exception is in its JobReturn and does not stop the jobs after it, while a job that
    exits (SystemExit) stops the sweep; so does a job that is killed."""

    def __init__(self, **kwargs: Any) -> None:
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("Launching %d jobs, one process each", len(job_overrides))
        runs = []
        spawn = multiprocessing.get_context("spawn")
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            job = (execute_job, (idx, overrides, self.hydra_context, self.config, self.task_function, Singleton.get_state()))
            receive, send = spawn.Pipe(duplex=False)
            process = spawn.Process(target=run_pickled, args=(cloudpickle.dumps(job), send), name=f"job {idx}")
            process.start()
            send.close()
            try:
                runs.append(cloudpickle.loads(receive.recv_bytes()))
            except EOFError:
                # Raised out of the job, past Hydra's run_job (SystemExit: emreason's own "Error: ..."
                # stops), or killed: the sweep stops here, as it would with the job in its process.
                process.join()
                raise SystemExit(f"Job #{idx} ended without a result (exit code {process.exitcode}); the sweep stops here.")
            process.join()
        return runs
