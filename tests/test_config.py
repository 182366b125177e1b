"""Typed configs: a wrong key, value or group choice fails before any model loads."""

import pytest

from conftest import REPO, run_emreason


@pytest.mark.parametrize(
    "override, message",
    [
        ("sampler=nope", "Could not find 'sampler/nope'"),
        ("sampler.budgett=3", "budgett"),
        ("sampler=rs sampler.budget=many", "sampler.budget"),
        ("sampler.keep=some", "expected one of [first, all]"),
        ("logger.mode=loud", "expected one of [offline, online, disabled]"),
        ("em.iterations=two", "em.iterations"),
    ],
)
def test_bad_config_fails_fast_and_names_the_problem(override, message):
    result = run_emreason(*override.split(), "--cfg", "job", timeout=120)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout


def test_every_sampler_and_model_config_composes():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from emreason.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for sampler in ["rs", "star", "pps"]:
            for model in ["smollm2_135m", "qwen2_5_3b", "llama3_2_3b"]:
                cfg = compose("config", overrides=[f"sampler={sampler}", f"model={model}"])
                assert OmegaConf.to_object(cfg.sampler).name == sampler
        tiny = compose("config", overrides=["experiment=tiny"])
        assert tiny.em.iterations == 1 and tiny.dataset.test_size == 16


def test_an_offline_hub_model_fails_with_a_clear_message(monkeypatch):
    from emreason.model_store import ModelConfig, ModelNotAvailableError, resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="model.path="):
        resolve_model(ModelConfig(name="Qwen", path="Qwen/Qwen2.5-3B-Instruct"))


def test_a_failing_job_does_not_stop_the_rest_of_a_sweep(tmp_path):
    """Both jobs fail at data loading (no model loads); the second still runs after the first."""
    result = run_emreason(
        "-m", "dataset.local_path=/missing/first,/missing/second", "dataset.hub_id=null",
        "logger.mode=disabled", f"hydra.sweep.dir={tmp_path}", timeout=300,
    )
    assert result.returncode != 0
    for job, path in [(0, "/missing/first"), (1, "/missing/second")]:
        assert (tmp_path / str(job) / ".hydra" / "overrides.yaml").read_text().count(path) == 1
    assert "/missing/first" in result.stderr
