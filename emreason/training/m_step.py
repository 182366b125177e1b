"""The M-step: a few optimizer steps of the policy on the E-step's weighted sequences.

The policy is the whole model (full fine-tuning) or LoRA adapters on the frozen model
(`optimizer.lora`); the optimizer step is the same for both, over whichever parameters train.
With `optimizer.processes > 1` the steps run in that many torchrun processes (data_parallel.py).
"""

import json
import math
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM

from emreason import precision
from emreason.checks import above, at_least, one_of
from emreason.training import lora
from emreason.training.data_parallel import ERROR, LOSSES, Handoff, Ranks, run_torchrun
from emreason.training.lora import LoraConfig
from emreason.training.loss import Normalisation, TrainingSequence, collate, logit_bias_scores, normalised, weighted_nll

# optimizer.dtype's choices: the dtype the forward and backward passes compute in.
M_STEP_DTYPES = (precision.AUTO, "float32", "bfloat16")


@dataclass
class OptimizerConfig:
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
    # Train LoRA adapters on the frozen model instead of every weight (optimizer=lora).
    lora: LoraConfig | None = None
    # Processes the M-step runs in, launched with torchrun each M-step (one per GPU, nccl;
    # gloo on CPUs). 1 trains in the job's own process.
    processes: int = field(default=1, metadata=at_least(1))


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


class MStepTrainer:
    """Holds the policy being learned and its optimizer for the whole job."""

    def __init__(
        self,
        base_model_dir: Path,
        config: OptimizerConfig,
        pad_id: int,
        seed: int,
        device: torch.device | None = None,
        checkpoint: Path | None = None,
    ):
        """checkpoint: a folder that save_weights (into checkpoint/model) and save_training_state
        wrote, to continue from (a resumed job) with one load of the weights; None starts from
        the base model."""
        self.base_model_dir = base_model_dir
        self.config = config
        self.pad_id = pad_id
        self.seed = seed
        self.rng = random.Random(seed)
        # With several processes, they train on the GPUs; this copy only hands the state over.
        on_gpu = torch.cuda.is_available() and config.processes == 1
        self.device = device or torch.device("cuda" if on_gpu else "cpu")
        self.compute_dtype = getattr(torch, precision.resolve(config.dtype))
        self._build(checkpoint)

    def restart_from_base(self) -> None:
        """The base model (with fresh adapters under LoRA) and a fresh optimizer; also the
        original STaR's outer loop."""
        self._build(None)

    def _build(self, checkpoint: Path | None) -> None:
        """The policy and its optimizer, from the base model or continued from checkpoint.
        Full fine-tuning continues from the checkpoint's weights; LoRA from the base model
        with the checkpoint's adapters."""
        weights = checkpoint / "model" if checkpoint and not self.config.lora else self.base_model_dir
        # float32 master weights whatever the compute dtype (bf16 is autocast, see accumulate_gradients).
        model = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.float32)
        if self.config.lora:
            model = lora.add_adapter(model, self.config.lora, self.seed)
        self.model = model.to(self.device).eval()
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=self.config.lr, weight_decay=self.config.weight_decay)
        if checkpoint:
            self._load_training_state(checkpoint)

    def save_weights(self, folder: Path) -> None:
        """Write the policy's weights as safetensors, for the engine to load (under LoRA the
        base weights with the adapters merged in)."""
        if self.config.lora:
            lora.save_merged(self.model, folder)
        else:
            self.model.save_pretrained(folder)

    def save_training_state(self, folder: Path) -> None:
        """What a resumed job needs beside the weights (save_weights into folder/model) to
        train on exactly as this one would: the optimizer moments and the batch order, and
        under LoRA the adapters themselves."""
        if self.config.lora:
            lora.save_adapter(self.model, folder)
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
        (folder / "trainer_rng.json").write_text(json.dumps(self.rng.getstate()))

    def load_checkpoint(self, folder: Path) -> None:
        """Continue from what save_weights (folder/model) and save_training_state wrote, into
        this trainer's model (how the M-step's processes hand their result back)."""
        if not self.config.lora:
            trained = AutoModelForCausalLM.from_pretrained(folder / "model", dtype=torch.float32)
            self.model.load_state_dict(trained.state_dict())
        self._load_training_state(folder)

    def _load_training_state(self, folder: Path) -> None:
        if self.config.lora:
            lora.load_adapter(self.model, folder)
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True, map_location=self.device))
        version, state, gauss = json.loads((folder / "trainer_rng.json").read_text())
        self.rng.setstate((version, tuple(state), gauss))

    def m_step(self, sequences: list[TrainingSequence], optimizer_steps: int | None = None) -> MStepStats:
        """The filtered samplers' M-step: `epochs` passes over the sequences in random steps of
        `batch_size`, or exactly `optimizer_steps` steps (cycling through fresh passes), each
        sequence weighted by `normalisation`."""
        steps_per_pass = math.ceil(len(sequences) / self.config.batch_size)
        sequences = normalised(sequences, self.config.normalisation, steps_per_pass)
        # Drawn here, once, so the result does not depend on the number of processes.
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
        """`logit_bias_scores` of each sequence at the current weights, shape (len, V), on the CPU."""
        size = self.config.micro_batch_size
        batches = [collate(sequences[i : i + size], self.pad_id) for i in range(0, len(sequences), size)]
        return torch.cat([logit_bias_scores(self.model, batch.to(self.device)).cpu() for batch in batches])

    def _run(self, steps: list[list[TrainingSequence]]) -> MStepStats:
        losses = self._train_in_processes(steps) if self.config.processes > 1 else self.train(steps)
        tokens = sum(len(s.completion_ids) for step in steps for s in step)
        padding = padding_share(steps, self.config.micro_batch_size)
        return MStepStats(sum(losses) / len(losses), len(steps), tokens, padding)

    def train(self, steps: list[list[TrainingSequence]], ranks: Ranks = Ranks()) -> list[float]:
        """Apply the optimizer steps in order; their losses."""
        self.model.train()
        try:
            progress = tqdm(steps, desc="M-step", unit="step", disable=ranks.rank > 0)
            return [self._optimizer_step(step, f"{n} of {len(steps)}", ranks) for n, step in enumerate(progress, 1)]
        finally:
            self.model.eval()

    def _optimizer_step(self, step: list[TrainingSequence], which: str, ranks: Ranks) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.accumulate_gradients(step, ranks)
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.trainable if p.grad is not None])
        check_finite(which, loss, grad_norm.item())
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(self.trainable, self.config.max_grad_norm, grad_norm)
        self.optimizer.step()
        return loss

    def accumulate_gradients(self, step: list[TrainingSequence], ranks: Ranks = Ranks()) -> float:
        """Backpropagate the step's loss (this process's share of its sequences, micro-batch by
        micro-batch) and sum the gradients over processes; the step's loss."""
        share = ranks.share(step)
        size = self.config.micro_batch_size
        loss = 0.0
        for start in range(0, len(share), size):
            micro_batch = collate(share[start : start + size], self.pad_id).to(self.device)
            with torch.autocast(self.device.type, self.compute_dtype, enabled=self.compute_dtype != torch.float32):
                micro_loss = weighted_nll(self.model, micro_batch)
            micro_loss.backward()
            loss += micro_loss.item()
        ranks.sum_gradients(self.trainable)
        return ranks.sum(loss, self.device)

    def _train_in_processes(self, steps: list[list[TrainingSequence]]) -> list[float]:
        """Run the steps under torchrun. The processes start from a checkpoint of this trainer
        in a temporary folder; rank 0 writes the trained one back there, and this trainer
        loads it, so checkpoints and resuming work as with one process."""
        with tempfile.TemporaryDirectory(prefix="emreason-m-step-") as name:
            folder = Path(name)
            self.save_weights(folder / "model")
            self.save_training_state(folder)
            Handoff(self.base_model_dir, self.config, self.pad_id, self.seed, steps).save(folder)
            exit_code = run_torchrun("emreason.training.distributed", folder, self.config.processes)
            if (folder / ERROR).exists():
                raise NonFiniteTrainingError((folder / ERROR).read_text())
            if exit_code != 0:
                raise RuntimeError(f"The M-step's torchrun processes failed (exit code {exit_code}); see their output above.")
            self.load_checkpoint(folder)
            return json.loads((folder / LOSSES).read_text())


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
