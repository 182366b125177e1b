"""The M-step in several processes (FSDP2, gloo) trains like one process (the filtered samplers'
M-step, TRICE's estimator step and its gradient scores), and its sharded checkpoints move
between process counts exactly.

Tolerance: the processes sum their gradient shares in another order than one process sums
its micro-batches, so results agree to float32 rounding, not bit for bit; state moved through
a checkpoint is bit-identical. Rounding is not uniformly small: one MLP unit of the tiny random
model (layer 0, unit 17) is ill-conditioned, and one process's float32 M-step already differs
from the same M-step in float64 by up to 3e-5 in its weights (measured). Weights are therefore
held to 1% of one step (atol lr / 100 = 1e-4) and optimizer moments to 1% (rtol 1e-2; entries
near zero to 1e-3 of the tensor's largest). A lost, doubled or averaged gradient share moves
weights by about one step (lr = 1e-2) and moments by half or more, far outside both.
"""

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from emreason.training.loss import TrainingSequence
from emreason.training.lora import LoraConfig
from emreason.training.m_step import MStepTrainer, NonFiniteTrainingError, OptimizerConfig
from emreason.training.trainer_processes import TrainerProcesses
from fakes import SIGNED_SEQUENCES

pytestmark = pytest.mark.slow

# Seven sequences, signed as TRICE's are, in steps of three: the last step (one sequence)
# leaves the second process only zero-weight work.
SIGNED = SIGNED_SEQUENCES + [TrainingSequence((5, 6), (20, 21, 22, 23, 24)), TrainingSequence((7,), (25,))]
# The filtered samplers' sequences: every weight 1.
UNSIGNED = [replace(sequence, weight=1.0) for sequence in SIGNED]
LORA = LoraConfig(rank=4, alpha=8.0)
WEIGHTINGS = {"signed": SIGNED, "unsigned": UNSIGNED}
LR = 1e-2


def config(lora: LoraConfig | None, **options) -> OptimizerConfig:
    # float32: `auto` would be bfloat16 on a machine with native bf16.
    return OptimizerConfig(lr=LR, epochs=2, batch_size=3, micro_batch_size=1, lora=lora, dtype="float32", **options)


def assert_close_state(got: dict, expected: dict, exact: bool, moments: bool = False) -> None:
    assert got.keys() == expected.keys()
    for name, tensor in got.items():
        if exact:
            assert torch.equal(tensor, expected[name]), name
            continue
        if moments:
            # Entries near zero differ at the scale of the tensor's largest.
            tolerance = dict(rtol=1e-2, atol=1e-3 * expected[name].abs().max().item())
        else:
            tolerance = dict(rtol=0.0, atol=LR / 100)
        torch.testing.assert_close(
            tensor, expected[name], **tolerance, msg=lambda detail, name=name: f"{name}: {detail}"
        )


def optimizer_moments(trainer: MStepTrainer) -> dict[str, torch.Tensor]:
    state = trainer.optimizer.state_dict()["state"]
    return {f"{index}.{key}": value for index, moments in state.items() for key, value in moments.items()}


def trained(trainer: MStepTrainer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}


def save(trainer, folder):
    trainer.save_weights(folder / "model")
    trainer.save_training_state(folder)
    return load_file(folder / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def pairs(tiny_model_dir):
    """Two-process trainers, started once per LoRA choice and shared by the tests, as a job
    shares them between its M-steps."""
    started = {}

    def pair(lora: LoraConfig | None) -> TrainerProcesses:
        if repr(lora) not in started:
            started[repr(lora)] = TrainerProcesses(tiny_model_dir, config(lora, processes=2), pad_id=0, seed=0)
        return started[repr(lora)]

    yield pair
    for trainer in started.values():
        trainer.close()


def fresh_alone_and_pair(model_dir, tmp_path, pairs, lora: LoraConfig | None) -> tuple[MStepTrainer, TrainerProcesses]:
    """A fresh one-process trainer, and the shared pair put where a fresh trainer starts,
    whatever it ran before: the base model, no optimizer moments, the seed's batch order (a
    checkpoint taken before any step)."""
    alone = MStepTrainer(model_dir, config(lora), pad_id=0, seed=0)
    pair = pairs(lora)
    alone.save_training_state(tmp_path / "fresh")
    pair.restart_from_base()
    pair.load_checkpoint(tmp_path / "fresh")
    return alone, pair


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_two_processes_train_like_one(tiny_model_dir, tmp_path, pairs, lora, weighting):
    alone, pair = fresh_alone_and_pair(tiny_model_dir, tmp_path, pairs, lora)
    sequences = WEIGHTINGS[weighting]
    alone_stats, pair_stats = alone.m_step(sequences), pair.m_step(sequences)
    assert pair_stats.optimizer_steps == alone_stats.optimizer_steps == 6
    assert pair_stats.tokens_trained == alone_stats.tokens_trained
    assert pair_stats.loss == pytest.approx(alone_stats.loss, rel=1e-5)
    # The engine's weights (merged under LoRA).
    assert_close_state(save(pair, tmp_path / "pair"), save(alone, tmp_path / "alone"), exact=False)
    # The moments show the gradients were summed, not averaged (Adam's step hardly depends on
    # the gradient's scale); read back through the sharded checkpoint.
    reader = MStepTrainer(tiny_model_dir, config(lora), pad_id=0, seed=0)
    reader.load_checkpoint(tmp_path / "pair")
    assert_close_state(optimizer_moments(reader), optimizer_moments(alone), exact=False, moments=True)
    assert reader.rng.getstate() == alone.rng.getstate()


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_a_checkpoint_moves_from_one_process_to_two_and_back_exactly(tiny_model_dir, tmp_path, pairs, lora):
    alone = MStepTrainer(tiny_model_dir, config(lora), pad_id=0, seed=0)
    alone.m_step(SIGNED)
    weights = save(alone, tmp_path / "alone")

    pair = pairs(lora)
    pair.load_checkpoint(tmp_path / "alone")
    assert_close_state(save(pair, tmp_path / "pair"), weights, exact=True)
    back = MStepTrainer(tiny_model_dir, config(lora), pad_id=0, seed=0)
    back.load_checkpoint(tmp_path / "pair")
    assert_close_state(trained(back), trained(alone), exact=True)
    assert_close_state(optimizer_moments(back), optimizer_moments(alone), exact=True)
    assert back.rng.getstate() == alone.rng.getstate()

    # Training goes on as the uninterrupted trainer's: exactly in one process, to rounding in two.
    pair.m_step(UNSIGNED)
    back.m_step(UNSIGNED)
    alone.m_step(UNSIGNED)
    assert_close_state(trained(back), trained(alone), exact=True)
    assert_close_state(save(pair, tmp_path / "pair-next"), save(alone, tmp_path / "alone-next"), exact=False)


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_trices_estimator_step_and_scores_in_two_processes_are_one_processs(tiny_model_dir, tmp_path, pairs, lora):
    alone, pair = fresh_alone_and_pair(tiny_model_dir, tmp_path, pairs, lora)
    torch.testing.assert_close(pair.log_likelihood_scores(SIGNED), alone.log_likelihood_scores(SIGNED), rtol=1e-4, atol=1e-6)
    pair_stats, alone_stats = pair.estimator_step(SIGNED), alone.estimator_step(SIGNED)
    assert pair_stats.optimizer_steps == alone_stats.optimizer_steps == 1
    assert pair_stats.loss == pytest.approx(alone_stats.loss, rel=1e-5)
    assert_close_state(save(pair, tmp_path / "pair"), save(alone, tmp_path / "alone"), exact=False)


def test_two_nodes_started_from_a_checkpoint_train_like_one_node(tiny_model_dir, tmp_path):
    """Two torchrun agents of one process each, rendezvous on 127.0.0.1, as SLURM's nodes would,
    continuing a one-process checkpoint as a resumed job's processes do."""
    alone = MStepTrainer(tiny_model_dir, config(None), pad_id=0, seed=0)
    alone.m_step(SIGNED)
    save(alone, tmp_path / "checkpoint")
    nodes = TrainerProcesses(
        tiny_model_dir, config(None, processes=2, nodes=2), pad_id=0, seed=0, checkpoint=tmp_path / "checkpoint"
    )
    try:
        nodes_stats = nodes.m_step(UNSIGNED)
        got = save(nodes, tmp_path / "nodes")
    finally:
        nodes.close()
    assert nodes_stats.loss == pytest.approx(alone.m_step(UNSIGNED).loss, rel=1e-5)
    assert_close_state(got, save(alone, tmp_path / "alone"), exact=False)


def test_a_non_finite_step_in_the_processes_names_the_step(tiny_model_dir):
    options = dict(lr=1e30, batch_size=1, max_grad_norm=0.0, processes=2, dtype="float32")
    pair = TrainerProcesses(tiny_model_dir, OptimizerConfig(**options), 0, 0)
    try:
        with pytest.raises(NonFiniteTrainingError, match=r"optimizer step 2 of 7: the (loss|gradient norm) is (nan|inf)"):
            pair.m_step(SIGNED)
    finally:
        pair.close()
