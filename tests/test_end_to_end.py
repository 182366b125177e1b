"""The real default model on vLLM, with tiny budgets (several minutes on a 2-core CPU)."""

import json

import pytest
from transformers import AutoTokenizer

from conftest import TINY_SWEEP_SAMPLERS, run_emreason, run_job
from emreason.metrics_file import read_metrics

pytestmark = pytest.mark.slow


def test_each_sampler_runs_one_em_iteration(tiny_multirun):
    sweep_dir, result = tiny_multirun
    for job, sampler in enumerate(TINY_SWEEP_SAMPLERS):
        rows = read_metrics(sweep_dir / str(job))
        assert [row["iteration"] for row in rows] == [0, 1]
        baseline, first = rows
        assert 0.0 <= baseline["test_accuracy"] <= 1.0
        assert "acceptance_rate" not in baseline
        for key in ["test_accuracy", "acceptance_rate", "mean_rationale_tokens", "e_step_s", "m_step_s", "sync_s"]:
            assert key in first, key
        assert first["tokens_generated"] > 0
        assert first["e_step_s"] > 0 and first["eval_s"] > 0
        if first["rationales_kept"]:
            assert first["m_step_s"] > 0 and first["sync_s"] > 0
        # The job's memory: what it holds at each row is within its peak since the previous row.
        assert all(0 < row["rss_gib"] <= row["peak_rss_gib"] for row in rows)
        config = (sweep_dir / str(job) / ".hydra" / "config.yaml").read_text()
        assert f"name: {sampler}" in config
        assert list((sweep_dir / str(job) / "wandb").glob("offline-run-*")), "no offline W&B run"
    # The per-iteration table is printed.
    assert "test_acc" in result.stdout and "e_step_s" in result.stdout


@pytest.mark.parametrize("optimizer", ["adamw", "lora"])
def test_m_step_weights_reach_the_running_engine(tmp_path, smoke_model_dir, optimizer):
    """After an M-step and a sync, the running engine (the default job's settings, its KV-cache
    block size included) generates exactly what a new engine started from the trained weights
    generates, and differs from before. Under LoRA the engine gets the merged weights."""
    from emreason.config import compose_job
    from emreason.generation.vllm_engine import VLLMGenerator
    from emreason.training.loss import TrainingSequence
    from emreason.training.lora import LoraConfig
    from emreason.training.m_step import MStepTrainer, OptimizerConfig

    optimizers = {
        "adamw": OptimizerConfig(lr=1e-4, epochs=3, batch_size=2),
        "lora": OptimizerConfig(name="lora", lr=1e-3, epochs=3, batch_size=2, lora=LoraConfig()),
    }

    tokenizer = AutoTokenizer.from_pretrained(smoke_model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Which planet is closest to the Sun? (A) Mars (B) Mercury"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    target = "Mercury orbits nearest to the Sun. The answer is (B)."
    sequence = TrainingSequence(
        tuple(tokenizer(prompt).input_ids),
        tuple(tokenizer(target, add_special_tokens=False).input_ids) + (tokenizer.eos_token_id,),
    )
    config = compose_job(["experiment=tiny"]).generator  # the smoke job's engine settings
    greedy = dict(n=1, temperature=0.0, max_new_tokens=24)

    engine = VLLMGenerator(smoke_model_dir, config, seed=0)
    try:
        assert engine.llm.llm_engine.vllm_config.cache_config.block_size == config.block_size == 64
        before = engine.generate([prompt], **greedy)[0][0].text
        trainer = MStepTrainer(smoke_model_dir, optimizers[optimizer], tokenizer.pad_token_id, seed=0)
        stats = trainer.m_step([sequence, sequence])
        assert stats.optimizer_steps == 3
        trainer.save_weights(tmp_path / "weights")
        tokenizer.save_pretrained(tmp_path / "weights")
        engine.load_weights(tmp_path / "weights")
        after = engine.generate([prompt], **greedy)[0][0].text
    finally:
        engine.close()
    assert after != before

    fresh = VLLMGenerator(tmp_path / "weights", config, seed=0)
    try:
        assert fresh.generate([prompt], **greedy)[0][0].text == after
    finally:
        fresh.close()


def test_rerunning_in_the_same_directory_resumes_after_the_last_checkpoint(tmp_path):
    common = ["experiment=tiny", "sampler=pps", "logger.mode=disabled", f"hydra.run.dir={tmp_path}"]
    first = run_emreason(*common)
    assert first.returncode == 0, first.stderr[-4000:]
    assert [row["iteration"] for row in read_metrics(tmp_path)] == [0, 1]
    assert (tmp_path / "checkpoint" / "COMPLETE").exists()
    # A row logged by an iteration whose checkpoint never completed (killed in between).
    with (tmp_path / "metrics.jsonl").open("a") as metrics:
        metrics.write(json.dumps({"iteration": 2, "test_accuracy": 0.99}) + "\n")

    resumed = run_emreason(*common, "em.iterations=2")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "Resuming after EM iteration 1" in resumed.stderr + resumed.stdout
    rows = read_metrics(tmp_path)
    assert [row["iteration"] for row in rows] == [0, 1, 2]
    assert rows[2]["test_accuracy"] != 0.99 and "e_step_s" in rows[2]


def test_star_original_trains_the_base_model_on_the_whole_training_set_for_growing_steps(tmp_path):
    """Two outer iterations of experiment=star_original on 8 training questions: each trains
    int(5 * 1.2^(n-1)) = 5 then 6 optimizer steps, and the step count is sampler state in the
    checkpoint (which questions and rationales: tests/test_samplers.py)."""
    rows = run_job(
        tmp_path, "experiment=star_original", "model=smollm2_135m", "dataset=arc_easy", "optimizer=adamw",
        "em.iterations=2", "dataset.train_size=8", "dataset.test_size=8",
        "sampler.first_m_step_steps=5", "generator.max_new_tokens=64",
    )
    assert [row["iteration"] for row in rows] == [0, 1, 2]
    trained = 0
    for row in rows[1:]:
        if row["rationales_kept"]:
            assert row["m_step_optimizer_steps"] == int(5 * 1.2**trained)
            trained += 1
    assert json.loads((tmp_path / "checkpoint" / "sampler.json").read_text()) == {"m_steps_done": trained}
