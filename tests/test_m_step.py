"""The M-step trainer: padded micro-batches give the gradient of each sequence alone, steps are
not built from length-sorted sequences, a non-finite step is stopped before it is applied, and a
checkpoint continues exactly."""

import random

import pytest
import torch

from emreason.training.loss import Normalisation, TrainingSequence
from emreason.training.m_step import (
    MStepTrainer,
    NonFiniteTrainingError,
    OptimizerConfig,
    by_length,
    check_finite,
    random_steps,
)
from emreason.training.lora import LoraConfig

PAD = 0
# Different lengths, prompts and signed (TRICE-style) weights.
SEQUENCES = [
    TrainingSequence((1, 2, 3), (4, 5), 1.0),
    TrainingSequence((1,), (6, 7, 8, 9, 10, 11), -0.5),
    TrainingSequence((3, 4, 5, 6, 7), (12,), 2.0),
    TrainingSequence((2, 9), (13, 14, 15), 1.0),
    TrainingSequence((8, 8, 8, 8, 8, 8, 8), (16, 17, 18, 19), -1.0),
]


def trainer(model_dir, pad_id=PAD, **options) -> MStepTrainer:
    return MStepTrainer(model_dir, OptimizerConfig(**options), pad_id, seed=0)


def gradients(model) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def each_sequence_alone(model, sequences) -> tuple[float, dict[str, torch.Tensor]]:
    """The textbook loss, one unpadded sequence at a time with every position's logits:
    -sum_i w_i log p(completion_i | prompt_i), and its gradient."""
    model.zero_grad(set_to_none=True)
    total = 0.0
    for sequence in sequences:
        ids = torch.tensor([sequence.prompt_ids + sequence.completion_ids])
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0], dim=-1)
        start = len(sequence.prompt_ids)
        log_likelihood = sum(log_probs[start - 1 + i, token] for i, token in enumerate(sequence.completion_ids))
        loss = -sequence.weight * log_likelihood
        loss.backward()
        total += loss.item()
    return total, gradients(model)


@pytest.mark.parametrize("micro_batch_size, pad_id", [(5, PAD), (2, PAD), (1, PAD), (2, 31)])
def test_padded_micro_batches_give_the_loss_and_gradient_of_each_sequence_alone(tiny_model_dir, micro_batch_size, pad_id):
    policy = trainer(tiny_model_dir, pad_id, batch_size=5, micro_batch_size=micro_batch_size)
    expected_loss, expected = each_sequence_alone(policy.model, SEQUENCES)

    policy.model.zero_grad(set_to_none=True)
    loss = policy.accumulate_gradients(by_length(SEQUENCES))

    assert loss == pytest.approx(expected_loss, rel=1e-5)
    got = gradients(policy.model)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-7, msg=name)


def test_which_sequences_share_an_optimizer_step_does_not_depend_on_their_lengths():
    """The same seed groups the same positions whatever the lengths, so no step is built from
    sorted sequences; within a step the order is by length (micro-batches pad little)."""
    def grouping(lengths: list[int]) -> list[set[int]]:
        # Position i is told apart by its completion token 100 + i.
        sequences = [TrainingSequence((1,) * length, (100 + i,)) for i, length in enumerate(lengths)]
        steps = random_steps(sequences, 4, random.Random(0))
        for step in steps:
            assert [len(s) for s in step] == sorted(len(s) for s in step)
        return [{s.completion_ids[0] - 100 for s in step} for step in steps]

    increasing = grouping(list(range(1, 17)))
    assert increasing == grouping(list(range(16, 0, -1))) == grouping([5] * 16)
    assert increasing != [set(range(start, start + 4)) for start in range(0, 16, 4)]


def test_m_step_normalisation_divides_by_constants_of_the_whole_m_step(tiny_model_dir):
    """Under `token` every step's loss is divided by the M-step's completion tokens per step,
    so one step's gradient does not depend on how many tokens that step happens to hold."""
    policy = trainer(tiny_model_dir, batch_size=2)
    captured = []
    policy._run = lambda steps: captured.extend(steps)
    policy.m_step(SEQUENCES)
    tokens_per_step = sum(len(s.completion_ids) for s in SEQUENCES) / 3
    assert sorted(s.weight for step in captured for s in step) == pytest.approx(sorted(s.weight / tokens_per_step for s in SEQUENCES))

    policy = trainer(tiny_model_dir, batch_size=2, normalisation=Normalisation.sequence)
    captured.clear()
    policy._run = lambda steps: captured.extend(steps)
    policy.m_step(SEQUENCES, optimizer_steps=7)
    assert len(captured) == 7
    expected = {s.completion_ids: s.weight / len(s.completion_ids) / (5 / 3) for s in SEQUENCES}
    for s in (s for step in captured for s in step):
        assert s.weight == pytest.approx(expected[s.completion_ids])


def test_a_nan_loss_stops_the_m_step_before_the_optimizer_applies_it(tiny_model_dir):
    policy = trainer(tiny_model_dir, lr=1e-2, batch_size=2)
    with torch.no_grad():
        policy.model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    before = {name: p.detach().clone() for name, p in policy.model.named_parameters()}
    with pytest.raises(NonFiniteTrainingError, match=r"optimizer step 1 of 3: the loss is nan"):
        policy.m_step(SEQUENCES)
    for name, p in policy.model.named_parameters():
        torch.testing.assert_close(p, before[name], equal_nan=True, msg=name)


def test_a_diverging_learning_rate_is_stopped_at_the_first_non_finite_step(tiny_model_dir):
    policy = trainer(tiny_model_dir, lr=1e30, batch_size=1, max_grad_norm=0.0)
    with pytest.raises(NonFiniteTrainingError, match=r"optimizer step 2 of 5: the (loss|gradient norm) is (nan|inf)"):
        policy.m_step(SEQUENCES)
    assert all(torch.isfinite(p).all() for p in policy.model.parameters())


def test_each_non_finite_quantity_is_named():
    with pytest.raises(NonFiniteTrainingError, match=r"step 3 of 4: the loss is nan and the gradient norm is inf\."):
        check_finite("3 of 4", float("nan"), float("inf"))
    check_finite("1 of 1", 2.5, 0.1)


@pytest.mark.parametrize(
    "lora", [None, LoraConfig(rank=4, alpha=8.0, target_modules=["q_proj", "down_proj"])], ids=["full", "lora"]
)
def test_a_checkpoint_continues_exactly_as_the_uninterrupted_trainer(tiny_model_dir, tmp_path, lora):
    options = dict(lr=1e-2, batch_size=2, lora=lora)
    uninterrupted = trainer(tiny_model_dir, **options)
    uninterrupted.m_step(SEQUENCES)
    uninterrupted.save_weights(tmp_path / "model")
    uninterrupted.save_training_state(tmp_path)
    uninterrupted.m_step(SEQUENCES)

    resumed = trainer(tiny_model_dir, **options)
    resumed.load_checkpoint(tmp_path)
    at_checkpoint = [p.detach().clone() for p in resumed.trainable]
    resumed.m_step(SEQUENCES)

    expected = uninterrupted.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert all(not torch.equal(p, start) for p, start in zip(resumed.trainable, at_checkpoint))
