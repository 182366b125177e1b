"""The M-step objective: a weighted log-likelihood of rationale + answer tokens.

Each sequence is (unhinted prompt, generated rationale and answer). Only the generated tokens
count; the prompt is context. A sequence's weight is its whole coefficient in the loss,
normalisation included (`normalised` folds it in before training), so the loss of an optimizer
step is a plain sum over its sequences and micro-batching cannot change it.
"""

from dataclasses import dataclass, replace
from enum import Enum

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


class Normalisation(str, Enum):
    """How the filtered samplers' M-step scales each sequence's log-likelihood (docs/training.md).
    Both divide by a constant of the whole M-step, never by a count of one optimizer step."""

    # Every completion token counts the same: sum_t log p / (the M-step's completion tokens per step).
    token = "token"
    # Every sequence counts the same: its mean token log-likelihood / (the M-step's sequences per step).
    sequence = "sequence"


@dataclass(frozen=True)
class TrainingSequence:
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    weight: float = 1.0

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


def normalised(sequences: list[TrainingSequence], normalisation: Normalisation, steps: int) -> list[TrainingSequence]:
    """The sequences with the normaliser folded into their weights, for an M-step of `steps`
    optimizer steps per pass: weight / (completion tokens / steps) under `token`,
    weight / |completion| / (sequences / steps) under `sequence`. The divisor is the mean per
    step, so the loss reads like a mean over a step whatever the step holds."""
    if normalisation is Normalisation.token:
        per_step = sum(len(s.completion_ids) for s in sequences) / steps
        return [replace(s, weight=s.weight / per_step) for s in sequences]
    per_step = len(sequences) / steps
    return [replace(s, weight=s.weight / max(len(s.completion_ids), 1) / per_step) for s in sequences]


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T), right-padded
    attention_mask: torch.Tensor  # (B, T), 1 on real tokens
    loss_mask: torch.Tensor  # (B, T), 1 on completion tokens (the ones the loss counts)
    weights: torch.Tensor  # (B,)

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(tensor.to(device) for tensor in vars(self).values()))

    @property
    def padding(self) -> int:
        """Pad positions the forward pass computes for nothing."""
        return int((self.attention_mask == 0).sum())


def collate(sequences: list[TrainingSequence], pad_id: int) -> Batch:
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    loss_mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, sequence in enumerate(sequences):
        ids = sequence.prompt_ids + sequence.completion_ids
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        loss_mask[row, len(sequence.prompt_ids) : len(ids)] = True
    weights = torch.tensor([s.weight for s in sequences], dtype=torch.float32)
    return Batch(input_ids, attention_mask, loss_mask, weights)


# Completion positions whose logits exist at once in the loss. Qwen's vocabulary makes the logits
# of a micro-batch of two 512-token rationales 1.2 GB in float32, and their softmax and gradient
# as much again; in chunks whose logits are recomputed in the backward pass they never exist
# together (docs/performance.md, "M-step memory").
LOGIT_CHUNK = 256


def completion_hidden(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The last hidden states at the positions that predict completion tokens, shape (N, H),
    their targets (N,) and the row of the batch each belongs to (N,). The vocabulary
    projection is left to the caller: on prompt and padding positions it would cost most of the
    M-step's memory and time for nothing."""
    # No KV cache: nothing is generated (and transformers warns once when it meets recomputation).
    hidden = model.get_decoder()(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).last_hidden_state
    # Position t predicts token t + 1.
    predicts = batch.loss_mask[:, 1:]
    targets = batch.input_ids[:, 1:][predicts]
    rows = torch.arange(len(batch.weights), device=predicts.device).unsqueeze(1).expand_as(predicts)[predicts]
    return hidden[:, :-1][predicts], targets, rows


def sequence_log_likelihoods(model, batch: Batch) -> torch.Tensor:
    """Per-sequence sum of log p(token) over the completion tokens, shape (B,)."""
    hidden, targets, rows = completion_hidden(model, batch)
    head = model.get_output_embeddings()
    token_log_likelihoods = torch.cat([
        checkpoint(_log_likelihoods, head, chunk, chunk_targets, use_reentrant=False)
        for chunk, chunk_targets, _ in logit_chunks(hidden, targets, rows)
    ])
    return torch.zeros(len(batch.weights), device=rows.device).index_add(0, rows, token_log_likelihoods)


def logit_chunks(hidden: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor):
    """(hidden, targets, rows) of `completion_hidden` in pieces of LOGIT_CHUNK positions."""
    return zip(hidden.split(LOGIT_CHUNK), targets.split(LOGIT_CHUNK), rows.split(LOGIT_CHUNK))


def _log_likelihoods(head, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -F.cross_entropy(head(hidden).float(), targets, reduction="none")


def weighted_nll(model, batch: Batch) -> torch.Tensor:
    """-sum_i w_i log p(z_i, y_i | x_i), the log-likelihoods summed over tokens. Micro-batches
    of one optimizer step add up to the step's loss and gradient."""
    return -(batch.weights * sequence_log_likelihoods(model, batch)).sum()


@torch.no_grad()
def logit_bias_scores(model, batch: Batch) -> torch.Tensor:
    """grad_b log p(z_i | x_i) for a bias b added to every output logit, at b = 0, shape (B, V):
    sum over the completion tokens of (onehot(target) - softmax(logits)). A gradient on a small
    virtual parameter, computed from one forward pass with no backward; TRICE logs the variance
    of its gradient estimate on it (samplers/trice.py, `gradient_variance`)."""
    hidden, targets, rows = completion_hidden(model, batch)
    head = model.get_output_embeddings()
    scores = torch.zeros(len(batch.weights), head.weight.shape[0], device=rows.device)
    for chunk, chunk_targets, chunk_rows in logit_chunks(hidden, targets, rows):
        per_token = -torch.softmax(head(chunk).float(), dim=-1)
        per_token[torch.arange(len(chunk_targets), device=rows.device), chunk_targets] += 1
        scores.index_add_(0, chunk_rows, per_token)
    return scores
