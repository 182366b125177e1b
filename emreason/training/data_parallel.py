"""Sharded data parallelism for the M-step: PyTorch FSDP2 (`fully_shard`).

Each decoder layer is one FSDP unit and the root unit (embeddings, final norm, LM head) is the
`PolicyLoss` module around the policy, so every parameter, gradient and AdamW moment is split
over the processes and a layer's weights are gathered only while it computes (source: the
FSDP2 tutorial, https://pytorch.org/tutorials/intermediate/FSDP_tutorial.html).

A step's sequences are dealt out round-robin. FSDP runs collectives in every forward and
backward, so every process runs the same number of micro-batches; a process whose share is
short runs zero-weight copies of a sequence, which add nothing to the gradient. The loss's
normaliser is already in every sequence's weight (`loss.normalised`) and FSDP sums (not
averages) the gradients, so the sharded gradient is exactly the gradient one process computes
on the step.

The trainer's checkpoint is a sharded `torch.distributed.checkpoint` that loads into any number
of processes, one included.
"""

import math
import os
import resource
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from emreason.training.loss import Batch, TrainingSequence, logit_bias_scores, weighted_nll


class PolicyLoss(torch.nn.Module):
    """The policy with the M-step's loss as its forward: the module FSDP's root unit wraps, so
    the root's parameters (embeddings, LM head) are gathered around the whole loss. Every
    forward pass of a sharded policy goes through it."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, batch: Batch, scores: bool = False) -> torch.Tensor:
        """The micro-batch's loss (`weighted_nll`), or with `scores` its `logit_bias_scores`
        (TRICE's variance metric)."""
        return logit_bias_scores(self.policy, batch) if scores else weighted_nll(self.policy, batch)


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
    """FSDP's dtypes from the M-step's compute dtype (`optimizer.dtype`): layers are gathered in
    it, gradients are summed over processes in float32, and the shards (the master weights and
    AdamW moments) stay float32. The trainer's autocast still decides each operation's dtype;
    the inputs are not cast, so the sequences' weights stay float32, as in one process."""
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32, cast_forward_inputs=False)


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


def whole_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The sharded policy's state dict, gathered onto the first process's CPU (a collective;
    the other processes get an empty one)."""
    gathered = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not gathered:
        return gathered
    # Tied weights (the LM head on the input embeddings) come back as copies; one tensor
    # again, so that the weights files hold them once, as in one process.
    tensors = model.state_dict(keep_vars=True)
    first_name = {}
    for name, tensor in tensors.items():
        first_name.setdefault(id(tensor), name)
    return {name: gathered[first_name[id(tensor)]] for name, tensor in tensors.items()}


# Only the parameters that train are checkpointed (under LoRA, the adapters); the frozen ones
# come from the base model.
TRAINED_ONLY = StateDictOptions(ignore_frozen_params=True, strict=False)


def trained_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train, by name (possibly sharded). torch's ignore_frozen_params keeps a
    frozen parameter that is tied under a second name: under LoRA the LM head on the input
    embeddings, 272 MB of Qwen2.5-0.5B's frozen embedding in every checkpoint."""
    frozen = {name for name, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
    return {name: tensor for name, tensor in get_model_state_dict(model, options=TRAINED_ONLY).items() if name not in frozen}


def save_trainer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, folder: Path, moments: bool) -> None:
    """Write the trained parameters and, with `moments`, their optimizer state as a sharded
    checkpoint in `folder` (every process writes its shards; one process writes them all).
    A failed write (a full disk) raises the OSError of the process it happened in."""
    state = {"model": trained_state_dict(model)}
    if moments:
        state["optimizer"] = get_optimizer_state_dict(model, optimizer, options=TRAINED_ONLY)
    try:
        dcp.save(state, checkpoint_id=folder, no_dist=not dist.is_initialized())
    except CheckpointException as error:
        # DCP wraps what each process raised; the job turns an OSError into a message that says
        # how to resume (emreason/checkpoint.py).
        os_errors = [raised for raised, _ in error.failures.values() if isinstance(raised, OSError)]
        if os_errors:
            raise os_errors[0] from None
        raise


def load_trainer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, folder: Path, weights: bool) -> None:
    """Load what save_trainer_state wrote, whatever number of processes wrote it: the optimizer
    state (when it was saved) and, with `weights`, the trained parameters."""
    saved = dcp.FileSystemReader(folder).read_metadata().state_dict_metadata
    # The current state is the template DCP reads into: these shapes, this process's shards.
    state = {}
    if weights:
        state["model"] = trained_state_dict(model)
    if any(key.startswith("optimizer.") for key in saved):
        state["optimizer"] = get_optimizer_state_dict(model, optimizer, options=TRAINED_ONLY)
    if not state:
        return
    dcp.load(state, checkpoint_id=folder, no_dist=not dist.is_initialized())
    if weights:
        set_model_state_dict(model, state["model"], options=TRAINED_ONLY)
    if "optimizer" in state:
        set_optimizer_state_dict(model, optimizer, state["optimizer"], options=TRAINED_ONLY)


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
    """What this process holds of the parameters, their gradients and the optimizer's state."""
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
