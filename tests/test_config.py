"""Every config composes, a failing job does not stop a sweep, and the config's engine settings
reach vLLM. The errors for wrong keys, values and choices are in test_bad_input.py."""

import os

from conftest import REPO, run_emreason

from emreason.generation.vllm_engine import GeneratorConfig, _prepare_cpu_environment


def test_every_sampler_and_model_config_composes_within_its_ranges():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from emreason.config import check_ranges, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for sampler in ["rs", "star", "pps", "trice"]:
            for model in ["smollm2_135m", "qwen2_5_3b", "llama3_2_3b"]:
                for generator in ["vllm_cpu", "vllm_gpu"]:
                    cfg = compose("config", overrides=[f"sampler={sampler}", f"model={model}", f"generator={generator}"])
                    assert OmegaConf.to_object(cfg.sampler).name == sampler
                    check_ranges(cfg)
        tiny = compose("config", overrides=["experiment=tiny"])
        assert tiny.em.iterations == 1 and tiny.dataset.test_size == 16
        check_ranges(tiny)


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


def test_the_engines_kv_cache_size_is_the_configs_even_over_an_inherited_one(monkeypatch):
    monkeypatch.setattr(os, "environ", {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2"})
    _prepare_cpu_environment(GeneratorConfig(cpu_kv_cache_gib=3))
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "3"
