"""The M-step: a few optimizer steps of the policy on the E-step's weighted sequences."""

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM

from emreason.training.loss import TrainingSequence, collate, weighted_nll


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
    # Sequences per forward pass; lower it to save memory, the step's gradient is the same.
    micro_batch_size: int = 8
    # Gradient clipping norm (0 disables it).
    max_grad_norm: float = 1.0
    # Trainer weights dtype; float32 keeps AdamW exact on a CPU.
    dtype: str = "float32"


@dataclass
class MStepStats:
    loss: float
    optimizer_steps: int
    tokens_trained: int


class MStepTrainer:
    """Holds the policy being learned and its optimizer for the whole job."""

    def __init__(self, base_model_dir: Path, config: OptimizerConfig, pad_id: int, seed: int):
        self.base_model_dir = base_model_dir
        self.config = config
        self.pad_id = pad_id
        self.rng = random.Random(seed)
        self.model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=getattr(torch, config.dtype))
        self.optimizer = self._new_optimizer()

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )

    def restart_from_base(self) -> None:
        """Back to the base model and a fresh optimizer (the original STaR's outer loop)."""
        base = AutoModelForCausalLM.from_pretrained(self.base_model_dir, dtype=getattr(torch, self.config.dtype))
        self.model.load_state_dict(base.state_dict())
        self.optimizer = self._new_optimizer()

    def save_training_state(self, folder: Path) -> None:
        """What a resumed job needs beside the weights (save_weights into folder/model) to
        train on exactly as this one would: the optimizer moments and the batch order."""
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
        (folder / "trainer_rng.json").write_text(json.dumps(self.rng.getstate()))

    def load_checkpoint(self, folder: Path) -> None:
        """Continue from folder/model and what save_training_state wrote into folder."""
        trained = AutoModelForCausalLM.from_pretrained(folder / "model", dtype=getattr(torch, self.config.dtype))
        self.model.load_state_dict(trained.state_dict())
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        version, state, gauss = json.loads((folder / "trainer_rng.json").read_text())
        self.rng.setstate((version, tuple(state), gauss))

    def batches(self, sequences: list[TrainingSequence]) -> list[list[TrainingSequence]]:
        """Optimizer steps of similar-length sequences (little padding), in random order."""
        by_length = sorted(sequences, key=len)
        size = self.config.batch_size
        steps = [by_length[i : i + size] for i in range(0, len(by_length), size)]
        self.rng.shuffle(steps)
        return steps

    def m_step(self, sequences: list[TrainingSequence]) -> MStepStats:
        self.model.train()
        losses, tokens = [], 0
        steps = [step for _ in range(self.config.epochs) for step in self.batches(sequences)]
        for step in tqdm(steps, desc="M-step", unit="step"):
            losses.append(self._optimizer_step(step))
            tokens += sum(len(s.completion_ids) for s in step)
        self.model.eval()
        return MStepStats(sum(losses) / len(losses), len(steps), tokens)

    def _optimizer_step(self, sequences: list[TrainingSequence]) -> float:
        num_tokens = sum(len(s.completion_ids) for s in sequences)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        size = self.config.micro_batch_size
        for start in range(0, len(sequences), size):
            batch = collate(sequences[start : start + size], self.pad_id)
            loss = weighted_nll(self.model, batch, num_tokens)
            loss.backward()
            total += loss.item()
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        return total

    def save_weights(self, folder: Path) -> None:
        """Write the policy's weights as safetensors, for the engine to load."""
        self.model.save_pretrained(folder)
