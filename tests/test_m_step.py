"""The M-step trainer: padded micro-batches give the gradient of each sequence alone (with either
attention implementation, with or without recomputed activations, with the logits in chunks), steps are not built from length-sorted sequences, bf16 compute keeps
float32 master weights, a non-finite step is stopped before it is applied, and a checkpoint
continues exactly, loading the weights once."""

import random

import pytest
import torch
import transformers

from emreason.training import loss as loss_module
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
from fakes import SIGNED_SEQUENCES

PAD = 0
SEQUENCES = SIGNED_SEQUENCES


def trainer(model_dir, pad_id=PAD, checkpoint=None, **options) -> MStepTrainer:
    # float32 unless asked: `auto` would be bfloat16 on a machine with native bf16.
    config = OptimizerConfig(**{"dtype": "float32", **options})
    return MStepTrainer(model_dir, config, pad_id, seed=0, checkpoint=checkpoint)


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


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("activation_checkpointing", [True, False])
@pytest.mark.parametrize("micro_batch_size, pad_id", [(5, PAD), (2, PAD), (1, PAD), (2, 31)])
def test_padded_micro_batches_give_the_loss_and_gradient_of_each_sequence_alone(
    tiny_model_dir, micro_batch_size, pad_id, attention, activation_checkpointing, monkeypatch
):
    # Logits in chunks of 3 positions, so that every micro-batch's loss spans several.
    monkeypatch.setattr(loss_module, "LOGIT_CHUNK", 3)
    policy = trainer(
        tiny_model_dir, pad_id, batch_size=5, micro_batch_size=micro_batch_size, attention=attention,
        activation_checkpointing=activation_checkpointing,
    )
    assert policy.model.config._attn_implementation == attention
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

    resumed = trainer(tiny_model_dir, **options, checkpoint=tmp_path)
    at_checkpoint = [p.detach().clone() for p in resumed.trainable]
    resumed.m_step(SEQUENCES)

    expected = uninterrupted.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert all(not torch.equal(p, start) for p, start in zip(resumed.trainable, at_checkpoint))


@pytest.mark.parametrize("lora", [None, LoraConfig(rank=4, alpha=8.0)], ids=["full", "lora"])
def test_a_trainer_resumed_from_a_checkpoint_loads_the_weights_once(tiny_model_dir, tmp_path, monkeypatch, lora):
    trained = trainer(tiny_model_dir, lr=1e-2, batch_size=2, lora=lora)
    trained.m_step(SEQUENCES)
    trained.save_weights(tmp_path / "model")
    trained.save_training_state(tmp_path)
    loaded = []
    from_pretrained = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(
        transformers.AutoModelForCausalLM, "from_pretrained",
        lambda folder, **options: loaded.append(folder) or from_pretrained(folder, **options),
    )

    resumed = trainer(tiny_model_dir, lr=1e-2, batch_size=2, lora=lora, checkpoint=tmp_path)

    # Full fine-tuning loads the checkpoint's weights; LoRA the base model (its adapters are small).
    assert loaded == [tiny_model_dir if lora else tmp_path / "model"]
    expected = trained.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_bfloat16_compute_keeps_float32_master_weights_and_the_float32_update(tiny_model_dir):
    """optimizer.dtype=bfloat16 is autocast: the matrix products run in bf16 and the gradient
    lands within 2% (per parameter, relative norm) of float32's, while weights, gradients and
    AdamW moments stay float32. Small updates are kept: a step of lr = 1e-7 (a relative change
    of ~5e-6 on these weights, std 0.02, far below bf16's resolution of 2^-8) moves every weight
    that has a gradient, and 99% of the weights by the float32 step's size (within 10%); the
    rest are those whose tiny gradient bf16 rounds to zero or flips (Adam's first step is
    lr * sign(g), so a flipped sign moves the weight the other way, by the same size)."""
    lr = 1e-7
    results = {}
    for dtype in ("float32", "bfloat16"):
        policy = trainer(tiny_model_dir, dtype=dtype, lr=lr, batch_size=len(SEQUENCES))
        before = {name: p.detach().clone() for name, p in policy.model.named_parameters()}
        step = list(SEQUENCES)
        policy.optimizer.zero_grad(set_to_none=True)
        loss = policy.accumulate_gradients(step)
        grads = {name: p.grad.clone() for name, p in policy.model.named_parameters()}
        policy.optimizer.step()
        updates = {name: p.detach() - before[name] for name, p in policy.model.named_parameters()}
        results[dtype] = loss, grads, updates
        assert all(p.dtype == torch.float32 for p in policy.model.parameters())
        assert all(p.grad.dtype == torch.float32 for p in policy.model.parameters())
        moments = [moment for state in policy.optimizer.state.values() for moment in (state["exp_avg"], state["exp_avg_sq"])]
        assert moments and all(moment.dtype == torch.float32 for moment in moments)

    (loss32, grads32, updates32), (loss16, grads16, updates16) = results["float32"], results["bfloat16"]
    assert loss16 != loss32, "bf16 autocast did not run"
    assert loss16 == pytest.approx(loss32, rel=1e-2)
    same_size = []
    for name in grads32:
        assert (grads16[name] - grads32[name]).norm() / grads32[name].norm() < 0.02, name
        assert torch.equal(updates16[name] != 0, grads16[name] != 0), name
        same_size.append(((updates16[name].abs() - updates32[name].abs()).abs() <= 0.1 * lr).flatten())
    assert torch.cat(same_size).float().mean() >= 0.99
