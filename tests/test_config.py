"""Every config composes, a failing job does not stop a sweep, and the config's engine settings
reach vLLM. The errors for wrong keys, values and choices are in test_bad_input.py."""

import os
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_emreason

from emreason.config import compose_job
from emreason.generation.vllm_engine import GeneratorConfig, _prepare_cpu_environment


def test_every_sampler_and_model_config_composes_within_its_ranges():
    for sampler in ["rs", "star", "pps", "trice"]:
        for model in ["qwen2_5_coder_0_5b", "smollm2_135m", "qwen2_5_3b", "llama3_2_3b"]:
            for generator in ["vllm_cpu", "vllm_gpu"]:
                job = compose_job([f"sampler={sampler}", f"model={model}", f"generator={generator}"])
                assert job.sampler.name == sampler
    tiny = compose_job(["experiment=tiny"])
    assert tiny.em.iterations == 1 and tiny.dataset.test_size == 16


@pytest.mark.parametrize("preset", sorted(path.stem for path in (REPO / "conf" / "experiment").glob("*.yaml")))
def test_every_preset_composes_as_the_command_prints_it(preset):
    result = run_emreason(f"experiment={preset}", "--cfg", "job", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    job = yaml.safe_load(result.stdout)
    assert {"dataset", "model", "sampler", "optimizer", "generator", "logger", "em"} <= set(job)


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


def stated_twice(yaml_file: Path, schema) -> list[str]:
    """The values a conf/ YAML file restates from its dataclass's defaults."""
    from omegaconf import OmegaConf

    found = []

    def same(value, inner) -> bool:
        if value._is_none() or inner._is_none():
            return value._is_none() and inner._is_none()
        if OmegaConf.is_list(value) and OmegaConf.is_list(inner):
            return list(value) == list(inner)
        return not OmegaConf.is_config(value) and not OmegaConf.is_config(inner) and inner._value() == value._value()

    def walk(node, default, key):
        for name in node:
            if name == "defaults" or name not in default or OmegaConf.is_interpolation(node, name):
                continue
            value, inner = node._get_node(name), default._get_node(name)
            if OmegaConf.is_dict(value) and OmegaConf.is_dict(inner) and not inner._is_none():
                walk(value, inner, f"{key}{name}.")
            elif same(value, inner):
                found.append(f"{yaml_file.parent.name}/{yaml_file.name}: {key}{name}")

    walk(OmegaConf.load(yaml_file), OmegaConf.structured(schema), "")
    return found


def test_each_default_is_written_once_in_its_dataclass():
    """conf/ states only what a choice changes (README, "Choosing what runs"); a value equal to the
    dataclass default would be a second copy that can drift from the first."""
    from emreason.config import Config
    from emreason.data.config import DatasetConfig
    from emreason.generation.vllm_engine import GeneratorConfig
    from emreason.model_store import ModelConfig
    from emreason.samplers import SAMPLERS
    from emreason.tracking import LoggerConfig
    from emreason.training.m_step import OptimizerConfig

    schemas = {
        "dataset": DatasetConfig, "model": ModelConfig, "optimizer": OptimizerConfig,
        "generator": GeneratorConfig, "logger": LoggerConfig,
    } | {f"sampler/{config.name}": config for config in SAMPLERS}
    found = stated_twice(REPO / "conf" / "config.yaml", Config)
    for group, schema in schemas.items():
        files = [REPO / "conf" / f"{group}.yaml"] if "/" in group else sorted((REPO / "conf" / group).glob("*.yaml"))
        for yaml_file in files:
            found += stated_twice(yaml_file, schema)
    assert not found, "values equal to their dataclass default:\n" + "\n".join(found)


def test_the_defaults_test_sees_a_restated_default(tmp_path):
    from emreason.training.m_step import OptimizerConfig

    (tmp_path / "adamw.yaml").write_text("defaults: [base_optimizer, _self_]\nlr: 1.0e-3\nepochs: 1\n")
    assert [line.split(": ")[1] for line in stated_twice(tmp_path / "adamw.yaml", OptimizerConfig)] == ["epochs"]
