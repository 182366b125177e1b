"""Data parallelism for the M-step: each process takes a share of every optimizer step's
sequences, and the gradients are summed over processes before the step is applied.

The loss of every process is divided by the whole step's completion-token count, so the sum
of their gradients is exactly the gradient one process computes on the whole step. The sum
is one explicit all-reduce per step instead of DistributedDataParallel's per-backward
averaging: a step's sequences rarely split evenly, so processes run different numbers of
micro-batches (or none), which DDP's hooks cannot synchronise without dummy passes.
"""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from emreason.training.loss import TrainingSequence

if TYPE_CHECKING:  # m_step imports this module
    from emreason.training.m_step import OptimizerConfig

HANDOFF = "handoff.pt"
# Written by rank 0 into the hand-off folder: the steps' losses, or why training stopped.
LOSSES = "losses.json"
ERROR = "error.txt"


@dataclass(frozen=True)
class Ranks:
    """This process's place among the M-step's processes (rank 0 of 1 in-process)."""

    rank: int = 0
    world_size: int = 1

    def share(self, step: list[TrainingSequence]) -> list[TrainingSequence]:
        return step[self.rank :: self.world_size]

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        if self.world_size == 1:
            return
        for parameter in parameters:
            # A process whose share was empty has no gradient yet; it still adds its zeros.
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            dist.all_reduce(parameter.grad)

    def sum(self, value: float, device: torch.device) -> float:
        if self.world_size == 1:
            return value
        total = torch.tensor(value, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return total.item()


def join_process_group() -> tuple[Ranks, torch.device]:
    """Called in each torchrun process: gloo on CPUs, nccl with one GPU per process."""
    on_gpu = torch.cuda.is_available()
    dist.init_process_group("nccl" if on_gpu else "gloo")
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    return Ranks(dist.get_rank(), dist.get_world_size()), device


@dataclass
class Handoff:
    """What the M-step's processes get beside the policy's state (a checkpoint in the same
    folder): how to build the trainer, and the optimizer steps in the order the job drew."""

    base_model_dir: Path
    config: "OptimizerConfig"
    pad_id: int
    seed: int
    steps: list[list[TrainingSequence]]

    def save(self, folder: Path) -> None:
        torch.save(self, folder / HANDOFF)

    @staticmethod
    def load(folder: Path) -> "Handoff":
        return torch.load(folder / HANDOFF, weights_only=False)


def run_torchrun(module: str, folder: Path, processes: int) -> int:
    """Run `python -m module folder` in `processes` processes on this machine; the exit code."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        "-m", module, str(folder),
    ]
    return subprocess.run(command, check=False).returncode
