"""The M-step's processes for the whole job: started once with torchrun, each holding a shard
of the trainer (FSDP2), and driven from the job's process through a socket per process.

The job's `TrainerProcesses` has the trainer's interface (m_step, TRICE's estimator_step and
log_likelihood_scores, save_weights for the engine, save_training_state and load_checkpoint for
checkpoints, restart_from_base); each call is sent
to every process (distributed.py) and returns what process 0 answers. Nothing of the model
stays in the job's process, and nothing is reloaded between M-steps.

Launch (`optimizer.launcher`): `local` starts `optimizer.nodes` torchrun agents on this
machine (one is a single-node job; several share a rendezvous on 127.0.0.1 and stand in for
nodes in tests); `srun` starts one agent per node of the SLURM allocation with `srun`, the
rendezvous on the job's node (docs/training.md).
"""

import ctypes
import logging
import os
import pickle
import secrets
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Client, Connection, answer_challenge, deliver_challenge
from pathlib import Path

import torch

from emreason.training.data_parallel import TrainerMemory
from emreason.training.loss import TrainingSequence
from emreason.training.m_step import MStepStats, MStepTrainer, OptimizerConfig, TrainerLauncher

log = logging.getLogger(__name__)

WORKER = "emreason.training.distributed"
# How a process finds and proves itself to the job (set in the agents' environment).
ADDRESS_ENV = "EMREASON_TRAINER_ADDRESS"
AUTHKEY_ENV = "EMREASON_TRAINER_AUTHKEY"
# Requests beside the trainer's own methods, and the kinds of reply: RAISED carries an error the
# job handles as it would from one process (a non-finite step, a full disk), FAILED the
# traceback of any other error, after which that process exits.
START, CLOSE = "start", "close"
OK, RAISED, FAILED = "ok", "raised", "failed"
# prctl's option number (linux/prctl.h).
PR_SET_PDEATHSIG = 1
# Seconds the agents get to finish after `close` before they are killed.
CLOSE_TIMEOUT_S = 60


class TrainerProcessesError(RuntimeError):
    """The M-step processes failed or exited; their own output says why."""


def start_trainer(
    base_model_dir: Path, config: OptimizerConfig, pad_id: int, seed: int, checkpoint: Path | None = None
) -> "Trainer":
    """The job's trainer: in this process, or in `config.processes` processes; continued from
    `checkpoint` when given (see MStepTrainer)."""
    if config.processes == 1:
        return MStepTrainer(base_model_dir, config, pad_id, seed, checkpoint=checkpoint)
    return TrainerProcesses(base_model_dir, config, pad_id, seed, checkpoint)


class TrainerProcesses:
    """MStepTrainer's interface to the trainer sharded over the M-step processes: each method
    runs MStepTrainer's in every process and returns process 0's result."""

    def __init__(
        self, base_model_dir: Path, config: OptimizerConfig, pad_id: int, seed: int, checkpoint: Path | None = None
    ):
        self.config = config
        self.connections: list[Connection] = []
        authkey = secrets.token_bytes(32)
        server = socket.create_server(("", 0))
        server.listen(config.processes)
        # SLURM's other nodes reach the job at its host name; local agents at the loopback.
        host = socket.gethostname() if config.launcher == TrainerLauncher.srun else "127.0.0.1"
        environment = {**os.environ, ADDRESS_ENV: f"{host}:{server.getsockname()[1]}", AUTHKEY_ENV: authkey.hex()}
        log.info("Starting %d M-step processes on %d node(s)", config.processes, config.nodes)
        self.agents = [
            subprocess.Popen(command, env=environment, preexec_fn=stop_with_parent)
            for command in agent_commands(config, host)
        ]
        try:
            with server:
                self.connections = self._accept(server, authkey)
            self._call(START, base_model_dir, config, pad_id, seed, checkpoint)
        except BaseException:
            self.close()
            raise

    def m_step(self, sequences: list[TrainingSequence], optimizer_steps: int | None = None) -> MStepStats:
        """The filtered samplers' M-step (MStepTrainer.m_step)."""
        return self._call("m_step", sequences, optimizer_steps)

    def estimator_step(self, sequences: list[TrainingSequence]) -> MStepStats:
        """TRICE's one optimizer step (MStepTrainer.estimator_step)."""
        return self._call("estimator_step", sequences)

    def log_likelihood_scores(self, sequences: list[TrainingSequence]) -> torch.Tensor:
        """MStepTrainer.log_likelihood_scores."""
        return self._call("log_likelihood_scores", sequences)

    def restart_from_base(self) -> None:
        """The base model and a fresh optimizer (MStepTrainer.restart_from_base)."""
        self._call("restart_from_base")

    def save_weights(self, folder: Path) -> None:
        """The engine's weights, written by process 0 (MStepTrainer.save_weights)."""
        self._call("save_weights", folder)

    def save_training_state(self, folder: Path) -> None:
        """The sharded checkpoint, every process writing its shards (MStepTrainer.save_training_state)."""
        self._call("save_training_state", folder)

    def load_checkpoint(self, folder: Path) -> None:
        """Continue from a checkpoint of any number of processes (MStepTrainer.load_checkpoint)."""
        self._call("load_checkpoint", folder)

    def memory(self) -> list[TrainerMemory]:
        """Each process's memory, by rank."""
        return self._call_each("memory")

    def close(self) -> None:
        """Stop the processes (they finish the request they are in first)."""
        for connection in self.connections:
            try:
                send(connection, (CLOSE, ()))
            except OSError:
                pass  # that process is gone already
        self._stop_agents()

    def _call(self, method: str, *args):
        return self._call_each(method, *args)[0]

    def _call_each(self, method: str, *args) -> list:
        for connection in self.connections:
            send(connection, (method, args))
        try:
            replies = [receive(connection) for connection in self.connections]
        except (EOFError, OSError) as error:
            raise TrainerProcessesError(f"The M-step processes exited during `{method}` ({self._exit_codes()}); see their output above.") from error
        for kind, value in replies:
            if kind == FAILED:
                raise TrainerProcessesError(f"The M-step processes failed during `{method}`:\n{value}")
            if kind == RAISED:
                raise value
        return [value for _, value in replies]

    def _accept(self, server: socket.socket, authkey: bytes) -> list[Connection]:
        """One connection per process, in rank order; stops if the agents exit first."""
        server.settimeout(1.0)
        by_rank: dict[int, Connection] = {}
        while len(by_rank) < self.config.processes:
            if any(agent.poll() is not None for agent in self.agents):
                raise TrainerProcessesError(f"The M-step processes exited while starting ({self._exit_codes()}).")
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            client.setblocking(True)
            connection = Connection(client.detach())
            deliver_challenge(connection, authkey)
            answer_challenge(connection, authkey)
            by_rank[receive(connection)] = connection
        return [by_rank[rank] for rank in range(self.config.processes)]

    def _stop_agents(self) -> None:
        for agent in self.agents:
            try:
                agent.wait(timeout=CLOSE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()

    def _exit_codes(self) -> str:
        return "exit codes " + ", ".join(str(agent.poll()) for agent in self.agents)


# The job's trainer: in its own process, or sharded over the M-step processes.
Trainer = MStepTrainer | TrainerProcesses


def agent_commands(config: OptimizerConfig, host: str) -> list[list[str]]:
    """The torchrun agents to start: one per node, each starting processes / nodes processes."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={config.processes // config.nodes}"]
    if config.nodes == 1 and config.launcher == TrainerLauncher.local:
        return [[*torchrun, "--standalone", "-m", WORKER]]
    rendezvous = [f"--nnodes={config.nodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={host}:{free_port()}"]
    agent = [*torchrun, *rendezvous, "-m", WORKER]
    if config.launcher == TrainerLauncher.local:
        return [agent] * config.nodes
    # One task per node; --overlap lets the step share the nodes with the job's own step.
    return [["srun", f"--nodes={config.nodes}", "--ntasks-per-node=1", "--overlap", "--kill-on-bad-exit=1", *agent]]


def stop_with_parent() -> None:
    """Run in each agent before it starts: the kernel sends it SIGTERM when the job's process
    dies, even by SIGKILL, and torchrun then stops its processes (Linux's PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port free on this machine now."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def connect_to_job(rank: int) -> Connection:
    """Called in each M-step process: the connection its requests come through."""
    host, port = os.environ[ADDRESS_ENV].rsplit(":", 1)
    connection = Client((host, int(port)), authkey=bytes.fromhex(os.environ[AUTHKEY_ENV]))
    send(connection, rank)
    return connection


def send(connection: Connection, message) -> None:
    """Send with the standard pickler. Connection.send's pickler would pass a tensor's storage
    as a file descriptor through multiprocessing's resource sharer, which only processes that
    multiprocessing started can reach (an AuthenticationError between torchrun's processes)."""
    connection.send_bytes(pickle.dumps(message))


def receive(connection: Connection):
    """What the other side `send` sent."""
    return pickle.loads(connection.recv_bytes())
