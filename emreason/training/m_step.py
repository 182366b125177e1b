"""The M-step: a few optimizer steps of the policy on the E-step's weighted sequences.

The policy is the whole model (full fine-tuning) or LoRA adapters on the frozen model
(`optimizer.lora`); the optimizer step is the same for both, over whichever parameters train.
With `optimizer.processes > 1` the trainer lives in that many torchrun processes for the whole
job (trainer_processes.py), each holding a shard of it (FSDP2, data_parallel.py).
"""

import json
import math
import random
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch
from torch.distributed.fsdp import FSDPModule
from tqdm import tqdm
from transformers import AutoModelForCausalLM

from emreason import precision
from emreason.checks import Checked, above, at_least, one_of
from emreason.training import lora
from emreason.training.data_parallel import (
    PolicyLoss,
    Ranks,
    TrainerMemory,
    full_value,
    load_trainer_state,
    save_trainer_state,
    shard,
    trainer_memory,
    whole_state_dict,
)
from emreason.training.lora import LoraConfig
from emreason.training.loss import Normalisation, TrainingSequence, collate, normalised

# optimizer.dtype's choices: the dtype the forward and backward passes compute in.
M_STEP_DTYPES = (precision.AUTO, "float32", "bfloat16")
# optimizer.attention's choices: transformers' attention implementation in the M-step.
ATTENTION = ("sdpa", "eager")
# A checkpoint's sharded trainer state (torch.distributed.checkpoint): the trained parameters
# and their AdamW moments, readable by any number of processes.
TRAINER_STATE = "trainer"
TRAINER_RNG = "trainer_rng.json"


class TrainerLauncher(str, Enum):
    local = "local"  # torchrun agents on this machine (optimizer.nodes of them simulate nodes)
    srun = "srun"  # one torchrun agent per node of the SLURM allocation, started with srun


@dataclass
class OptimizerConfig(Checked):
    # Optimizer name, shown in logs.
    name: str = "adamw"
    # Peak learning rate of AdamW.
    lr: float = field(default=5e-5, metadata=above(0))
    weight_decay: float = field(default=0.0, metadata=at_least(0))
    # Passes over the E-step's sequences per M-step (filtered samplers; TRICE takes one step).
    epochs: int = field(default=1, metadata=at_least(1))
    # How the filtered samplers' loss weighs sequences: `token` (every completion token counts
    # the same) or `sequence` (every rationale counts the same, whatever its length); the
    # divisor is a constant of the whole M-step (docs/training.md). TRICE uses its own weights.
    normalisation: Normalisation = Normalisation.token
    # Sequences per optimizer step.
    batch_size: int = field(default=8, metadata=at_least(1))
    # Sequences per forward pass; the step's gradient is the same for any size. On a CPU, 2 is
    # as fast as 8 and holds a quarter of the activations (docs/performance.md).
    micro_batch_size: int = field(default=2, metadata=at_least(1))
    # Gradient clipping norm (0 disables it).
    max_grad_norm: float = field(default=1.0, metadata=at_least(0))
    # Compute dtype: float32, or bfloat16 (autocast; the weights, gradients and AdamW state stay
    # float32, so small updates are not lost); auto = bfloat16 where the hardware computes it
    # natively (CUDA, CPU flag avx512_bf16 or amx_bf16), else float32 (emreason/precision.py).
    dtype: str = field(default=precision.AUTO, metadata=one_of(*M_STEP_DTYPES))
    # transformers' attention implementation: sdpa (torch's fused kernels, which never hold a
    # sequence's T x T attention weights) or eager (plain matrix products). On a CPU with AMX, sdpa
    # was faster in bf16 at Qwen's lengths and held 2 GiB less (docs/performance.md, "M-step memory").
    attention: str = field(default="sdpa", metadata=one_of(*ATTENTION))
    # Recompute each layer's activations in the backward pass instead of keeping them (torch's
    # non-reentrant checkpointing): the M-step's memory then hardly depends on the rationales'
    # length, for about a quarter more M-step time (docs/performance.md, "M-step memory").
    activation_checkpointing: bool = True
    # Train LoRA adapters on the frozen model instead of every weight (optimizer=lora).
    lora: LoraConfig | None = None
    # Processes the M-step runs in, all nodes together (one per GPU, nccl; gloo on CPUs),
    # started once per job with torchrun (FSDP2, docs/training.md). 1 trains in the job's own
    # process.
    processes: int = field(default=1, metadata=at_least(1))
    # Nodes the processes spread over, processes / nodes on each.
    nodes: int = field(default=1, metadata=at_least(1))
    # How the torchrun agents start: `local` (on this machine) or `srun` (one per node of the
    # SLURM allocation; docs/training.md).
    launcher: TrainerLauncher = TrainerLauncher.local

    def problems(self) -> list[str]:
        if self.nodes >= 1 and self.processes % self.nodes:
            return [
                f"optimizer.processes={self.processes} is out of range: allowed a multiple of "
                f"optimizer.nodes={self.nodes} (every node runs the same number of processes)"
            ]
        return []


@dataclass
class MStepStats:
    loss: float
    optimizer_steps: int
    tokens_trained: int
    # Share of the forward passes' positions that were padding.
    padding_share: float

    def metrics(self) -> dict[str, float]:
        return {
            "m_step_loss": self.loss,
            "m_step_optimizer_steps": self.optimizer_steps,
            "m_step_padding_share": self.padding_share,
        }


class NonFiniteTrainingError(RuntimeError):
    """A non-finite loss or gradient norm, raised before the optimizer applies the step."""


def weights_dtype(config: OptimizerConfig, world_size: int = 1) -> torch.dtype:
    """The dtype the policy's weights are loaded in, with world_size M-step processes (sharded
    when more than one). Trained weights are float32 whatever the compute dtype (bf16 is
    autocast, see accumulate_gradients), so small updates are not lost. LoRA's frozen base
    weights take no step: in one process they are held in the compute dtype, half the memory in
    bf16 (peft keeps the adapters float32; FSDP shards take one dtype, so sharded they stay
    float32)."""
    if config.lora and world_size == 1:
        return getattr(torch, precision.resolve(config.dtype))
    return torch.float32


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
        checkpoint: Path | None = None,
        ranks: Ranks = Ranks(),
    ):
        """checkpoint: a folder that save_weights (into checkpoint/model) and save_training_state
        wrote, to continue from (a resumed job) with one load of the weights; None starts from
        the base model. ranks: this process's place among the M-step processes (sharded when
        there are several)."""
        self.base_model_dir = base_model_dir
        self.config = config
        self.pad_id = pad_id
        self.seed = seed
        self.ranks = ranks
        # Every process draws the same batch order, so the result does not depend on their number.
        self.rng = random.Random(seed)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.compute_dtype = getattr(torch, precision.resolve(config.dtype))
        self._build(checkpoint)

    def restart_from_base(self) -> None:
        """The base model (with fresh adapters under LoRA) and a fresh optimizer; also the
        original STaR's outer loop."""
        self._build(None)

    def _build(self, checkpoint: Path | None) -> None:
        """The policy and its optimizer, from the base model or continued from checkpoint.
        Full fine-tuning continues from the checkpoint's weights (model/) and its moments;
        LoRA from the base model with the checkpoint's adapters and their moments."""
        weights = checkpoint / "model" if checkpoint and not self.config.lora else self.base_model_dir
        dtype = weights_dtype(self.config, self.ranks.world_size)
        model = AutoModelForCausalLM.from_pretrained(weights, dtype=dtype, attn_implementation=self.config.attention)
        if self.config.activation_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.config.lora:
            model = lora.add_adapter(model, self.config.lora, self.seed)
        self.model = model.to(self.device).eval()
        self.loss = PolicyLoss(self.model)
        if self.ranks.world_size > 1:
            shard(self.loss, self.compute_dtype)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=self.config.lr, weight_decay=self.config.weight_decay)
        if checkpoint:
            self._load_training_state(checkpoint, weights=bool(self.config.lora))

    def save_weights(self, folder: Path) -> None:
        """Write the policy's weights as safetensors, for the engine to load (under LoRA the
        base weights with the adapters merged in). Sharded, every process takes part and the
        first one writes."""
        state = self.model.state_dict() if self.ranks.world_size == 1 else whole_state_dict(self.model)
        if self.ranks.rank > 0:
            return
        if self.config.lora:
            lora.save_merged(self.model, state, folder)
        else:
            self.model.save_pretrained(folder, state_dict=state)

    def save_training_state(self, folder: Path) -> None:
        """What a resumed job needs to train on exactly as this one would, on any number of
        processes: the trained parameters and their optimizer moments (a sharded checkpoint,
        folder/trainer) and the batch order."""
        # Before the first step there are no moments: asking for them would make torch take an
        # empty step, which counts in AdamW's bias correction.
        save_trainer_state(self.model, self.optimizer, folder / TRAINER_STATE, moments=bool(self.optimizer.state))
        if self.ranks.rank == 0:
            (folder / TRAINER_RNG).write_text(json.dumps(self.rng.getstate()))

    def load_checkpoint(self, folder: Path) -> None:
        """Continue from what save_training_state wrote, whatever number of processes wrote it,
        into this trainer's model and optimizer."""
        self._load_training_state(folder, weights=True)

    def _load_training_state(self, folder: Path, weights: bool) -> None:
        """The moments, the batch order and, with `weights`, the trained parameters."""
        load_trainer_state(self.model, self.optimizer, folder / TRAINER_STATE, weights=weights)
        version, rng_state, gauss = json.loads((folder / TRAINER_RNG).read_text())
        self.rng.setstate((version, tuple(rng_state), gauss))

    def memory(self) -> TrainerMemory:
        """What this process holds of the trainer, and its peak memory."""
        return trainer_memory(list(self.model.parameters()), self.optimizer)

    def close(self) -> None:
        """Nothing to stop: the trainer lives in the job's process (see TrainerProcesses)."""

    def m_step(self, sequences: list[TrainingSequence], optimizer_steps: int | None = None) -> MStepStats:
        """The filtered samplers' M-step: `epochs` passes over the sequences in random steps of
        `batch_size`, or exactly `optimizer_steps` steps (cycling through fresh passes), each
        sequence weighted by `normalisation`."""
        steps_per_pass = math.ceil(len(sequences) / self.config.batch_size)
        sequences = normalised(sequences, self.config.normalisation, steps_per_pass)
        steps = []
        passes = self.config.epochs if optimizer_steps is None else math.ceil(optimizer_steps / steps_per_pass)
        for _ in range(passes):
            steps += random_steps(sequences, self.config.batch_size, self.rng)
        return self._run(steps[:optimizer_steps])

    def estimator_step(self, sequences: list[TrainingSequence]) -> MStepStats:
        """One optimizer step whose gradient is that of -sum_i w_i log p(z_i, y_i | x_i), the
        weights taken as they are (TRICE's estimator, samplers/trice.py)."""
        return self._run([by_length(sequences)])

    @torch.no_grad()
    def log_likelihood_scores(self, sequences: list[TrainingSequence]) -> torch.Tensor:
        """`logit_bias_scores` of each sequence at the current weights, shape (len, V), on the CPU.
        Sharded, every process computes all of them (their forward passes gather the layers
        together)."""
        size = self.config.micro_batch_size
        batches = [collate(sequences[i : i + size], self.pad_id) for i in range(0, len(sequences), size)]
        scores = torch.cat([self.loss(batch.to(self.device), scores=True).cpu() for batch in batches])
        if isinstance(self.loss, FSDPModule):
            # A forward pass with no backward leaves the root unit's parameters gathered.
            self.loss.reshard()
        return scores

    def _run(self, steps: list[list[TrainingSequence]]) -> MStepStats:
        losses = self.train(steps)
        tokens = sum(len(s.completion_ids) for step in steps for s in step)
        padding = padding_share(steps, self.config.micro_batch_size)
        return MStepStats(sum(losses) / len(losses), len(steps), tokens, padding)

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
        micro-batch; sharded, FSDP sums the shares' gradients); the step's loss."""
        loss = 0.0
        for micro_batch in self.ranks.micro_batches(step, self.config.micro_batch_size):
            with torch.autocast(self.device.type, self.compute_dtype, enabled=self.compute_dtype != torch.float32):
                micro_loss = self.loss(collate(micro_batch, self.pad_id).to(self.device))
            micro_loss.backward()
            loss += micro_loss.item()
        return self.ranks.sum(loss, self.device)


def by_length(step: list[TrainingSequence]) -> list[TrainingSequence]:
    """A step's sequences ordered by length, so its micro-batches pad little. The order inside
    a step does not change its gradient (a sum over its sequences)."""
    return sorted(step, key=len)


def random_steps(sequences: list[TrainingSequence], batch_size: int, rng: random.Random) -> list[list[TrainingSequence]]:
    """One pass as optimizer steps of `batch_size`: which sequences share a step is a seeded
    shuffle of their positions, independent of their lengths (length-sorted steps would put the
    long rationales together and weigh the steps unevenly)."""
    order = list(range(len(sequences)))
    rng.shuffle(order)
    chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    return [by_length([sequences[i] for i in chunk]) for chunk in chunks]


def padding_share(steps: list[list[TrainingSequence]], micro_batch_size: int) -> float:
    """Padded positions / all positions of the steps' forward passes (one process)."""
    padded = total = 0
    for step in steps:
        for start in range(0, len(step), micro_batch_size):
            lengths = [len(s) for s in step[start : start + micro_batch_size]]
            padded += max(lengths) * len(lengths) - sum(lengths)
            total += max(lengths) * len(lengths)
    return padded / total if total else 0.0


def check_finite(which: str, loss: float, grad_norm: float) -> None:
    problems = [f"{name} is {value}" for name, value in [("the loss", loss), ("the gradient norm", grad_norm)]
                if not math.isfinite(value)]
    if problems:
        raise NonFiniteTrainingError(
            f"M-step optimizer step {which}: {' and '.join(problems)}. Stopped before the optimizer applied "
            "it: the weights are those after the previous step and the last checkpoint is unchanged. "
            "Lower optimizer.lr, keep optimizer.max_grad_norm > 0, or check the training sequences."
        )
