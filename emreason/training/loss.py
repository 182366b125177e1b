"""The M-step objective: a weighted log-likelihood of rationale + answer tokens.

Each sequence is (unhinted prompt, generated rationale and answer). Only the generated tokens
count; the prompt is context. A sequence's weight is 1 for the filtered samplers and signed for
TRICE's control variate, which pushes wrong proposals down.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TrainingSequence:
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    weight: float = 1.0

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T), right-padded
    attention_mask: torch.Tensor  # (B, T), 1 on real tokens
    loss_mask: torch.Tensor  # (B, T), 1 on completion tokens (the ones the loss counts)
    weights: torch.Tensor  # (B,)

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(tensor.to(device) for tensor in vars(self).values()))


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


def sequence_log_likelihoods(model, batch: Batch) -> torch.Tensor:
    """Per-sequence sum of log p(token) over the completion tokens, shape (B,).

    The vocabulary projection runs on completion positions only: on prompt and padding
    positions it would cost most of the M-step's memory and time for nothing.
    """
    hidden = model.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    # Position t predicts token t + 1.
    predicts = batch.loss_mask[:, 1:]
    logits = model.get_output_embeddings()(hidden[:, :-1][predicts])
    targets = batch.input_ids[:, 1:][predicts]
    token_log_likelihoods = -F.cross_entropy(logits.float(), targets, reduction="none")
    rows = torch.arange(len(batch.weights), device=predicts.device).unsqueeze(1).expand_as(predicts)[predicts]
    return torch.zeros(len(batch.weights), device=predicts.device).index_add(0, rows, token_log_likelihoods)


def weighted_nll(model, batch: Batch, num_tokens: int) -> torch.Tensor:
    """-sum_i w_i log p(z_i, y_i | x_i), divided by num_tokens (the completion tokens of the
    whole optimizer step, so micro-batches add up to a per-token mean)."""
    return -(batch.weights * sequence_log_likelihoods(model, batch)).sum() / num_tokens
