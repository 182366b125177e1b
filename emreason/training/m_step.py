"""The M-step: a few optimizer steps of the policy on the E-step's weighted sequences.

The policy is the whole model (full fine-tuning) or LoRA adapters on the frozen model
(`optimizer.lora`); the optimizer step is the same for both, over whichever parameters train.
With `optimizer.processes > 1` the trainer lives in that many torchrun processes for the whole
job (trainer_processes.py), each holding a shard of it (FSDP2, data_parallel.py).
"""

import json
import math
import random
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)
from tqdm import tqdm
from transformers import AutoModelForCausalLM

from emreason.training import lora
from emreason.training.data_parallel import PolicyLoss, Ranks, TrainerMemory, full_value, shard, trainer_memory
from emreason.training.lora import LoraConfig
from emreason.training.loss import TrainingSequence, collate

# A checkpoint's sharded trainer state (torch.distributed.checkpoint): the trained parameters
# and their AdamW moments, readable by any number of processes.
TRAINER_STATE = "trainer"
TRAINER_RNG = "trainer_rng.json"
# Only the parameters that train are checkpointed (under LoRA, the adapters); the frozen ones
# come from the base model.
TRAINED_ONLY = StateDictOptions(ignore_frozen_params=True, strict=False)


class TrainerLauncher(str, Enum):
    local = "local"  # torchrun agents on this machine (optimizer.nodes of them simulate nodes)
    srun = "srun"  # one torchrun agent per node of the SLURM allocation, started with srun


@dataclass
class OptimizerConfig:
    # Optimizer name, shown in logs.
    name: str = "adamw"
    # Peak learning rate of AdamW.
    lr: float = 1e-5
    weight_decay: float = 0.0
    # Passes over the E-step's sequences per M-step.
    epochs: int = 1
    # Sequences per optimizer step.
    batch_size: int = 8
    # Sequences per forward pass; the step's gradient is the same for any size. On a CPU, 2 is
    # as fast as 8 and holds a quarter of the activations (docs/performance.md).
    micro_batch_size: int = 2
    # Gradient clipping norm (0 disables it).
    max_grad_norm: float = 1.0
    # Trainer weights dtype; float32 keeps AdamW exact on a CPU.
    dtype: str = "float32"
    # Train LoRA adapters on the frozen model instead of every weight (optimizer=lora).
    lora: LoraConfig | None = None
    # Processes the M-step runs in, all nodes together (one per GPU, nccl; gloo on CPUs),
    # started once per job with torchrun. 1 trains in the job's own process.
    processes: int = 1
    # Nodes the processes spread over (processes / nodes per node).
    nodes: int = 1
    # How the torchrun agents start: on this machine, or one per SLURM node (docs/training.md).
    launcher: TrainerLauncher = TrainerLauncher.local


@dataclass
class MStepStats:
    loss: float
    optimizer_steps: int
    tokens_trained: int


class NonFiniteTrainingError(RuntimeError):
    """A non-finite loss or gradient norm, raised before the optimizer applies the step."""


class MStepTrainer:
    """Holds the policy being learned and its optimizer for the whole job: in the job's process,
    or one shard of them in each M-step process (`ranks`)."""

    def __init__(
        self,
        base_model_dir: Path,
        config: OptimizerConfig,
        pad_id: int,
        seed: int,
        device: torch.device | None = None,
        ranks: Ranks = Ranks(),
    ):
        self.base_model_dir = base_model_dir
        self.config = config
        self.pad_id = pad_id
        self.seed = seed
        self.ranks = ranks
        # Every process draws the same batch order, so the result does not depend on their number.
        self.rng = random.Random(seed)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.restart_from_base()

    def restart_from_base(self) -> None:
        """The base model (with fresh adapters under LoRA) and a fresh optimizer; also the
        original STaR's outer loop."""
        dtype = getattr(torch, self.config.dtype)
        model = AutoModelForCausalLM.from_pretrained(self.base_model_dir, dtype=dtype)
        if self.config.lora:
            model = lora.add_adapter(model, self.config.lora, self.seed)
        self.model = model.to(self.device).eval()
        self.loss = PolicyLoss(self.model)
        if self.ranks.world_size > 1:
            shard(self.loss, dtype)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def save_weights(self, folder: Path) -> None:
        """Write the policy's weights as safetensors, for the engine to load (under LoRA the
        base weights with the adapters merged in). Sharded, every process takes part and the
        first one writes."""
        state = self._whole_state()
        if self.ranks.rank > 0:
            return
        if self.config.lora:
            lora.save_merged(self.model, state, folder)
        else:
            self.model.save_pretrained(folder, state_dict=state)

    def _whole_state(self) -> dict[str, torch.Tensor]:
        """The policy's state dict, gathered onto the first process's CPU when sharded (the
        others get an empty one)."""
        if self.ranks.world_size == 1:
            return self.model.state_dict()
        gathered = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not gathered:
            return gathered
        # Tied weights (the LM head on the input embeddings) come back as copies; one tensor
        # again, so that the weights files hold them once, as in one process.
        parameters = self.model.state_dict(keep_vars=True)
        first_name = {}
        for name, parameter in parameters.items():
            first_name.setdefault(id(parameter), name)
        return {name: gathered[first_name[id(parameter)]] for name, parameter in parameters.items()}

    def save_training_state(self, folder: Path) -> None:
        """What a resumed job needs to train on exactly as this one would, on any number of
        processes: the trained parameters and their optimizer moments (a sharded checkpoint,
        folder/trainer) and the batch order."""
        # Before the first step there are no moments: asking for them would make torch take an
        # empty step, which counts in AdamW's bias correction.
        state = self._training_state(with_moments=bool(self.optimizer.state))
        dcp.save(state, checkpoint_id=folder / TRAINER_STATE, no_dist=self.ranks.world_size == 1)
        if self.ranks.rank == 0:
            (folder / TRAINER_RNG).write_text(json.dumps(self.rng.getstate()))

    def load_checkpoint(self, folder: Path) -> None:
        """Continue from what save_training_state wrote, whatever number of processes wrote it."""
        saved = dcp.FileSystemReader(folder / TRAINER_STATE).read_metadata().state_dict_metadata
        # The current state is the template DCP reads into: these shapes, this process's shards.
        state = self._training_state(with_moments=any(key.startswith("optimizer.") for key in saved))
        dcp.load(state, checkpoint_id=folder / TRAINER_STATE, no_dist=self.ranks.world_size == 1)
        if "optimizer" in state:
            set_state_dict(
                self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                options=TRAINED_ONLY,
            )
        else:
            set_model_state_dict(self.model, state["model"], options=TRAINED_ONLY)
        version, rng_state, gauss = json.loads((folder / TRAINER_RNG).read_text())
        self.rng.setstate((version, tuple(rng_state), gauss))

    def _training_state(self, with_moments: bool) -> dict:
        if not with_moments:
            return {"model": get_model_state_dict(self.model, options=TRAINED_ONLY)}
        model_state, optimizer_state = get_state_dict(self.model, self.optimizer, options=TRAINED_ONLY)
        return {"model": model_state, "optimizer": optimizer_state}

    def memory(self) -> TrainerMemory:
        return trainer_memory(list(self.model.parameters()), self.optimizer)

    def close(self) -> None:
        """Nothing to stop: the trainer lives in the job's process (see TrainerProcesses)."""

    def batches(self, sequences: list[TrainingSequence]) -> list[list[TrainingSequence]]:
        """Optimizer steps of similar-length sequences (little padding), in random order."""
        by_length = sorted(sequences, key=len)
        size = self.config.batch_size
        steps = [by_length[i : i + size] for i in range(0, len(by_length), size)]
        self.rng.shuffle(steps)
        return steps

    def m_step(self, sequences: list[TrainingSequence]) -> MStepStats:
        steps = [step for _ in range(self.config.epochs) for step in self.batches(sequences)]
        losses = self.train(steps)
        tokens = sum(len(s.completion_ids) for step in steps for s in step)
        return MStepStats(sum(losses) / len(losses), len(steps), tokens)

    def train(self, steps: list[list[TrainingSequence]]) -> list[float]:
        """Apply the optimizer steps in order; their losses."""
        self.model.train()
        try:
            progress = tqdm(steps, desc="M-step", unit="step", disable=self.ranks.rank > 0)
            return [self._optimizer_step(step, f"{n} of {len(steps)}") for n, step in enumerate(progress, 1)]
        finally:
            self.model.eval()

    def _optimizer_step(self, step: list[TrainingSequence], which: str) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.accumulate_gradients(step)
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.trainable if p.grad is not None])
        # Every process sees the same summed loss and norm, so all stop at the same step.
        check_finite(which, loss, full_value(grad_norm).item())
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(self.trainable, self.config.max_grad_norm, grad_norm)
        self.optimizer.step()
        return loss

    def accumulate_gradients(self, step: list[TrainingSequence]) -> float:
        """Backpropagate the step's loss (this process's share of its sequences, micro-batch by
        micro-batch; FSDP sums the shares' gradients); the step's loss."""
        num_tokens = sum(len(s.completion_ids) for s in step)
        loss = 0.0
        for micro_batch in self.ranks.micro_batches(step, self.config.micro_batch_size):
            micro_loss = self.loss(collate(micro_batch, self.pad_id).to(self.device), num_tokens)
            micro_loss.backward()
            loss += micro_loss.item()
        return self.ranks.sum(loss, self.device)


def check_finite(which: str, loss: float, grad_norm: float) -> None:
    problems = [f"{name} is {value}" for name, value in [("the loss", loss), ("the gradient norm", grad_norm)]
                if not math.isfinite(value)]
    if problems:
        raise NonFiniteTrainingError(
            f"M-step optimizer step {which}: {' and '.join(problems)}. Stopped before the optimizer applied "
            "it: the weights are those after the previous step and the last checkpoint is unchanged. "
            "Lower optimizer.lr, keep optimizer.max_grad_norm > 0, or check the training sequences."
        )
