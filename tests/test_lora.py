"""optimizer=lora: only the adapters train, and the engine gets the merged weights (on the real
engine: tests/test_end_to_end.py::test_m_step_weights_reach_the_running_engine[lora])."""

import torch
import torch.distributed.checkpoint as dcp
from transformers import AutoModelForCausalLM

from emreason.training.loss import TrainingSequence
from emreason.training.lora import LoraConfig
from emreason.training.m_step import TRAINER_STATE, MStepTrainer, OptimizerConfig

SEQUENCES = [TrainingSequence((1, 2, 3), (4, 5, 6)), TrainingSequence((7, 8), (9, 10, 11, 12), -0.5)]


def lora_trainer(model_dir, dtype="float32", **options) -> MStepTrainer:
    config = OptimizerConfig(name="lora", lr=1e-2, batch_size=2, lora=LoraConfig(rank=4, alpha=8.0), dtype=dtype, **options)
    return MStepTrainer(model_dir, config, pad_id=0, seed=0)


def test_only_the_adapters_train_and_the_saved_weights_are_the_merged_policy(tiny_model_dir, tmp_path):
    trainer = lora_trainer(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7]])
    # Fresh adapters add nothing.
    torch.testing.assert_close(trainer.model(input_ids=ids).logits, base(input_ids=ids).logits)
    assert trainer.trainable and all(".lora_" in name for name, p in trainer.model.named_parameters() if p.requires_grad)

    trainer.m_step(SEQUENCES)
    trainer.save_weights(tmp_path)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        policy_logits = trainer.model(input_ids=ids).logits
        assert not torch.allclose(policy_logits, base(input_ids=ids).logits, atol=1e-4)
        torch.testing.assert_close(merged(input_ids=ids).logits, policy_logits, rtol=1e-4, atol=1e-5)
    # The frozen base weights are untouched by training and saving.
    frozen = trainer.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
    assert torch.equal(frozen, base.model.layers[0].self_attn.q_proj.weight)


def test_restarting_from_base_drops_the_adapters_training(tiny_model_dir):
    trainer = lora_trainer(tiny_model_dir)
    fresh = [p.detach().clone() for p in trainer.trainable]
    trainer.m_step(SEQUENCES)
    trainer.restart_from_base()
    assert all(torch.equal(p, start) for p, start in zip(trainer.trainable, fresh))
    assert trainer.optimizer.state_dict()["state"] == {}


def test_the_training_checkpoint_holds_only_the_adapters_and_resumes_them(tiny_model_dir, tmp_path):
    trainer = lora_trainer(tiny_model_dir)
    trainer.m_step(SEQUENCES)
    trainer.save_training_state(tmp_path)
    saved = dcp.FileSystemReader(tmp_path / TRAINER_STATE).read_metadata().state_dict_metadata
    weights = [key for key in saved if key.startswith("model.")]
    # Not the LM head, which is frozen and tied to the embeddings.
    assert weights and all(".lora_" in key for key in weights)
    resumed = lora_trainer(tiny_model_dir)
    resumed.load_checkpoint(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(resumed.trainable, trainer.trainable, strict=True))


def test_in_bfloat16_the_frozen_base_is_held_in_bfloat16_and_the_adapters_train_in_float32(tiny_model_dir):
    trainer = lora_trainer(tiny_model_dir, dtype="bfloat16")
    frozen = [p for p in trainer.model.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert all(p.dtype == torch.float32 for p in trainer.trainable)
    before = [p.detach().clone() for p in trainer.trainable]
    trainer.m_step(SEQUENCES)
    assert any(not torch.equal(p, start) for p, start in zip(trainer.trainable, before))
