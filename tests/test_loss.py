"""The M-step loss counts only the rationale + answer tokens, weighted per sequence."""

import torch

from emreason.training.loss import TrainingSequence, collate, sequence_log_likelihoods, weighted_nll

PAD = 0


def random_logits(batch, vocab=11, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch.input_ids.shape + (vocab,), generator=generator)


def test_loss_mask_covers_exactly_the_completion_tokens():
    sequences = [TrainingSequence((5, 6, 7), (8, 9)), TrainingSequence((5,), (4, 3, 2))]
    batch = collate(sequences, PAD)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 4, 3, 2, 0]]
    assert batch.loss_mask.tolist() == [
        [False, False, False, True, True],
        [False, True, True, True, False],
    ]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]


def test_log_likelihood_matches_a_hand_computation():
    sequences = [TrainingSequence((1, 2), (3, 4))]
    batch = collate(sequences, PAD)
    logits = random_logits(batch)
    log_probs = torch.log_softmax(logits[0], dim=-1)
    # Token 3 is predicted at position 1, token 4 at position 2.
    expected = log_probs[1, 3] + log_probs[2, 4]
    assert torch.allclose(sequence_log_likelihoods(logits, batch)[0], expected)


def test_prompt_and_padding_logits_do_not_change_the_loss():
    sequences = [TrainingSequence((1, 2, 3), (4, 5)), TrainingSequence((1,), (6,))]
    batch = collate(sequences, PAD)
    logits = random_logits(batch)
    loss = weighted_nll(logits, batch, num_tokens=3)
    changed = logits.clone()
    changed[0, :2] += 100.0 * torch.randn_like(changed[0, :2])  # predictions of prompt tokens
    changed[1, 2:] -= 50.0  # after the last real token of the short sequence
    assert torch.allclose(loss, weighted_nll(changed, batch, num_tokens=3))
    changed[0, 3, 5] += 1.0  # the logit of the completion's last token: it must matter
    assert not torch.allclose(loss, weighted_nll(changed, batch, num_tokens=3))


def test_weights_scale_and_sign_each_sequence():
    plain = [TrainingSequence((1, 2), (3, 4)), TrainingSequence((1, 2), (5,))]
    batch = collate(plain, PAD)
    logits = random_logits(batch)
    per_sequence = -sequence_log_likelihoods(logits, batch)
    weighted = collate([TrainingSequence((1, 2), (3, 4), 2.0), TrainingSequence((1, 2), (5,), -1.0)], PAD)
    expected = (2.0 * per_sequence[0] - per_sequence[1]) / 3
    assert torch.allclose(weighted_nll(logits, weighted, num_tokens=3), expected)
