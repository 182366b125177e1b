"""An M-step in two torchrun processes (gloo) trains exactly like one process."""

import pytest
import torch

from emreason.training.loss import TrainingSequence
from emreason.training.lora import LoraConfig
from emreason.training.m_step import MStepTrainer, NonFiniteTrainingError, OptimizerConfig
from fakes import SIGNED_SEQUENCES

# Seven sequences in steps of three: the last step (one sequence) leaves a process nothing.
SEQUENCES = SIGNED_SEQUENCES + [TrainingSequence((5, 6), (20, 21, 22, 23, 24)), TrainingSequence((7,), (25,))]


def train(model_dir, processes: int, **options):
    config = OptimizerConfig(
        lr=1e-2, epochs=2, batch_size=3, micro_batch_size=1, processes=processes, dtype="float32", **options
    )
    trainer = MStepTrainer(model_dir, config, pad_id=0, seed=0)
    return trainer, trainer.m_step(SEQUENCES)


@pytest.mark.parametrize("lora", [None, LoraConfig(rank=4, alpha=8.0)], ids=["full", "lora"])
def test_two_processes_give_the_loss_and_weights_of_one(tiny_model_dir, lora):
    alone, alone_stats = train(tiny_model_dir, 1, lora=lora)
    pair, pair_stats = train(tiny_model_dir, 2, lora=lora)

    assert pair_stats.optimizer_steps == alone_stats.optimizer_steps == 6
    assert pair_stats.tokens_trained == alone_stats.tokens_trained
    assert pair_stats.loss == pytest.approx(alone_stats.loss, rel=1e-5)
    expected = alone.model.state_dict()
    for name, tensor in pair.model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=1e-4, atol=1e-6, msg=name)
    # The optimizer moments came back too; unlike the weights (Adam's step barely depends on
    # the gradient's scale) they show the summed gradients are the one process's gradients.
    expected_state = alone.optimizer.state_dict()["state"]
    for index, state in pair.optimizer.state_dict()["state"].items():
        for key in ["step", "exp_avg", "exp_avg_sq"]:
            expected_moment = expected_state[index][key]
            # Entries near zero differ by float rounding at the scale of the tensor's largest.
            scale = expected_moment.abs().max().item()
            torch.testing.assert_close(state[key], expected_moment, rtol=1e-4, atol=1e-5 * scale)
    assert pair.rng.getstate() == alone.rng.getstate()


def test_a_non_finite_step_in_the_processes_names_the_step(tiny_model_dir):
    config = OptimizerConfig(lr=1e-2, batch_size=3, processes=2)
    trainer = MStepTrainer(tiny_model_dir, config, pad_id=0, seed=0)
    with torch.no_grad():
        trainer.model.model.layers[1].self_attn.o_proj.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteTrainingError, match=r"optimizer step 1 of 3: the loss is nan"):
        trainer.m_step(SEQUENCES)
