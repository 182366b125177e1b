"""Sharded data parallelism for the M-step: PyTorch FSDP2 (`fully_shard`).

Each decoder layer is one FSDP unit and the root unit (embeddings, final norm, LM head) is the
`PolicyLoss` module around the policy, so every parameter, gradient and AdamW moment is split
over the processes and a layer's weights are gathered only while it computes (source: the
FSDP2 tutorial, https://pytorch.org/tutorials/intermediate/FSDP_tutorial.html).

A step's sequences are dealt out round-robin. FSDP runs collectives in every forward and
backward, so every process runs the same number of micro-batches; a process whose share is
short runs zero-weight copies of a sequence, which add nothing to the gradient. Every process
divides its loss by the whole step's completion-token count and FSDP sums (not averages) the
gradients, so the sharded gradient is exactly the gradient one process computes on the step.
"""

import math
import os
import resource
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from emreason.training.loss import Batch, TrainingSequence, weighted_nll


class PolicyLoss(torch.nn.Module):
    """The policy with the M-step's loss as its forward: the module FSDP's root unit wraps, so
    the root's parameters (embeddings, LM head) are gathered around the whole loss."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, batch: Batch, num_tokens: int) -> torch.Tensor:
        return weighted_nll(self.policy, batch, num_tokens)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the M-step's processes (rank 0 of 1 in-process)."""

    rank: int = 0
    world_size: int = 1

    def micro_batches(self, step: list[TrainingSequence], size: int) -> list[list[TrainingSequence]]:
        """This process's micro-batches of a step: every world_size-th sequence, `size` per
        forward pass, padded to the same count on every process with zero-weight work."""
        share = step[self.rank :: self.world_size]
        count = math.ceil(math.ceil(len(step) / self.world_size) / size)
        micro_batches = [share[start : start + size] for start in range(0, len(share), size)]
        return micro_batches + [[replace(step[0], weight=0.0)]] * (count - len(micro_batches))

    def sum(self, value: float, device: torch.device) -> float:
        if self.world_size == 1:
            return value
        total = torch.tensor(value, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return total.item()


def mixed_precision(dtype: torch.dtype) -> MixedPrecisionPolicy:
    """FSDP's dtypes from the M-step's dtype setting (`optimizer.dtype`): layers gather and
    compute in the trainer's dtype, gradients are summed over processes in float32."""
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)


def shard(loss: PolicyLoss, dtype: torch.dtype) -> None:
    """Shard the policy in place over the process group: each decoder layer, then the root."""
    policy = mixed_precision(dtype)
    for layer in loss.policy.get_decoder().layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(loss, mp_policy=policy)
    for unit in loss.modules():
        if isinstance(unit, FSDPModule):
            # Sum the processes' gradients: each one's loss already carries the global normaliser.
            unit.set_gradient_divide_factor(1.0)
            # Gloo has no pre-multiplied sum, which FSDP would otherwise use for that factor.
            unit.set_force_sum_reduction_for_comms(True)


def full_value(tensor: torch.Tensor) -> torch.Tensor:
    """The whole value of a possibly sharded tensor (a collective when it is sharded)."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def join_process_group() -> tuple[Ranks, torch.device]:
    """Called in each torchrun process: gloo on CPUs, nccl with one GPU per process."""
    on_gpu = torch.cuda.is_available()
    dist.init_process_group("nccl" if on_gpu else "gloo")
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    return Ranks(dist.get_rank(), dist.get_world_size()), device


@dataclass(frozen=True)
class TrainerMemory:
    """What one M-step process holds, in bytes."""

    # Its parameters, gradients and optimizer state (its shards when sharded).
    training_state: int
    # Peak resident memory of the process (Linux reports kibibytes).
    peak_resident: int


def trainer_memory(parameters: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer) -> TrainerMemory:
    local = [t.to_local() if isinstance(t, DTensor) else t for t in _training_tensors(parameters, optimizer)]
    return TrainerMemory(
        training_state=sum(t.numel() * t.element_size() for t in local),
        peak_resident=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )


def _training_tensors(parameters, optimizer):
    for parameter in parameters:
        yield parameter
        if parameter.grad is not None:
            yield parameter.grad
    for state in optimizer.state.values():
        yield from (value for value in state.values() if isinstance(value, torch.Tensor))
