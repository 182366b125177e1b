"""The M-step loss counts only the rationale + answer tokens, weighted per sequence."""

import pytest
import torch
from fakes import tiny_llama

from emreason.training import loss
from emreason.training.loss import (
    Normalisation,
    TrainingSequence,
    collate,
    logit_bias_scores,
    normalised,
    sequence_log_likelihoods,
    weighted_nll,
)

PAD = 0


@pytest.fixture(scope="module")
def tiny_model():
    return tiny_llama(vocab_size=13, max_positions=32, tied=False).eval()


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
    assert weighted_nll(tiny_model, batch).item() == 0.0


def test_weights_scale_and_sign_each_sequence(tiny_model):
    plain = collate([TrainingSequence((1, 2), (3, 4)), TrainingSequence((1, 2), (5,))], PAD)
    per_sequence = -sequence_log_likelihoods(tiny_model, plain)
    weighted = collate([TrainingSequence((1, 2), (3, 4), 2.0), TrainingSequence((1, 2), (5,), -1.0)], PAD)
    expected = 2.0 * per_sequence[0] - per_sequence[1]
    assert weighted_nll(tiny_model, weighted).item() == pytest.approx(expected.item(), abs=1e-5)


def test_normalisation_divides_by_constants_of_the_whole_m_step():
    sequences = [TrainingSequence((1,), (2, 3, 4), 1.0), TrainingSequence((1,), (5,), -2.0)]
    # 4 completion tokens over 2 steps: 2 tokens per step.
    assert [s.weight for s in normalised(sequences, Normalisation.token, steps=2)] == [1 / 2, -2 / 2]
    # 2 sequences over 2 steps: 1 per step; each divided by its own length.
    assert [s.weight for s in normalised(sequences, Normalisation.sequence, steps=2)] == [1 / 3, -2.0]


@pytest.mark.parametrize("logit_chunk", [2, 256])
def test_logit_bias_scores_are_the_gradient_with_respect_to_a_bias_on_every_logit(tiny_model, logit_chunk, monkeypatch):
    monkeypatch.setattr(loss, "LOGIT_CHUNK", logit_chunk)
    sequences = [TrainingSequence((1, 2), (3, 4, 5)), TrainingSequence((6,), (7,))]
    scores = logit_bias_scores(tiny_model, collate(sequences, PAD))
    head = tiny_model.get_output_embeddings()
    for row, sequence in enumerate(sequences):
        bias = torch.zeros(13, requires_grad=True)
        handle = head.register_forward_hook(lambda module, inputs, output: output + bias)
        try:
            log_likelihood = full_logits_log_likelihood(tiny_model, list(sequence.prompt_ids), list(sequence.completion_ids))
        finally:
            handle.remove()
        (expected,) = torch.autograd.grad(log_likelihood, bias)
        torch.testing.assert_close(scores[row], expected, rtol=1e-4, atol=1e-5)
