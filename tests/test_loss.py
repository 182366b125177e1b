"""The M-step loss counts only the rationale + answer tokens, weighted per sequence."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from emreason.training.loss import TrainingSequence, collate, sequence_log_likelihoods, weighted_nll

PAD = 0


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=13, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
    )
    return LlamaForCausalLM(config).eval()


def test_loss_mask_covers_exactly_the_completion_tokens():
    sequences = [TrainingSequence((5, 6, 7), (8, 9)), TrainingSequence((5,), (4, 3, 2))]
    batch = collate(sequences, PAD)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 4, 3, 2, 0]]
    assert batch.loss_mask.tolist() == [
        [False, False, False, True, True],
        [False, True, True, True, False],
    ]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]


def full_logits_log_likelihood(model, prompt, completion):
    """The textbook computation on one unpadded sequence: every position's logits."""
    ids = torch.tensor([prompt + completion])
    log_probs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return sum(log_probs[len(prompt) - 1 + i, token] for i, token in enumerate(completion))


def test_log_likelihood_matches_full_logits_on_each_unpadded_sequence(tiny_model):
    sequences = [TrainingSequence((1, 2, 3), (4, 5)), TrainingSequence((1,), (6, 7, 8, 9))]
    got = sequence_log_likelihoods(tiny_model, collate(sequences, PAD))
    for row, sequence in enumerate(sequences):
        expected = full_logits_log_likelihood(tiny_model, list(sequence.prompt_ids), list(sequence.completion_ids))
        assert got[row].item() == pytest.approx(expected.item(), abs=1e-4)


def test_only_completion_tokens_carry_gradient(tiny_model):
    """Changing a prompt token changes the context (so the loss) but the prompt token itself
    is never a target: the loss of a sequence with an empty completion is zero."""
    batch = collate([TrainingSequence((1, 2, 3), ())], PAD)
    assert weighted_nll(tiny_model, batch, num_tokens=1).item() == 0.0


def test_weights_scale_and_sign_each_sequence(tiny_model):
    plain = collate([TrainingSequence((1, 2), (3, 4)), TrainingSequence((1, 2), (5,))], PAD)
    per_sequence = -sequence_log_likelihoods(tiny_model, plain)
    weighted = collate([TrainingSequence((1, 2), (3, 4), 2.0), TrainingSequence((1, 2), (5,), -1.0)], PAD)
    expected = (2.0 * per_sequence[0] - per_sequence[1]) / 3
    assert weighted_nll(tiny_model, weighted, num_tokens=3).item() == pytest.approx(expected.item(), abs=1e-5)
