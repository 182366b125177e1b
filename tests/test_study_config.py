"""The study's presets compose: experiment=study (5 arms at one E-step budget, GSM8K, 3 seeds)
and hparams_search=study_pilot (a grid of M-step settings on validation questions)."""

import itertools

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from emreason.data.loading import load_benchmark
from fakes import compose_config as composed

ARMS = ["rs", "star", "pps", "trice", "trice_no_cv"]


def rationales_per_question(sampler) -> int:
    """The most rationales an E-step draws per question, for each sampler's settings."""
    return {
        "rs": lambda: sampler.budget,
        "pps": lambda: sampler.samples_per_question,
        "star": lambda: sampler.samples_per_question + sampler.rationalization_samples,
        "trice": lambda: sampler.init_samples + 1,  # a new question: memory init, then one proposal
    }[sampler.name]()


def test_the_study_sweeps_15_jobs_of_5_arms():
    params = composed("experiment=study", hydra=True).hydra.sweeper.params
    overrides = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    values = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()] for o in overrides]
    jobs = list(itertools.product(*values))
    assert len(jobs) == 15
    assert set(params["arm"].split(",")) == set(ARMS)
    assert params["dataset"] == "gsm8k"
    # Every arm of seed 0 on one benchmark first: a study stopped early holds paired comparisons.
    first = [dict(zip([o.key_or_group for o in overrides], job)) for job in jobs[:5]]
    assert {job["arm"] for job in first} == set(ARMS)
    assert {(job["seed"], job["dataset"]) for job in first} == {("0", "gsm8k")}


@pytest.mark.parametrize("arm", ARMS)
def test_every_arm_has_the_same_e_step_budget(arm):
    cfg = composed("experiment=study", f"arm={arm}")
    assert rationales_per_question(cfg.sampler) == 4
    assert cfg.sampler.name == arm.removesuffix("_no_cv")
    if cfg.sampler.name == "trice":
        assert cfg.sampler.control_variate is (arm == "trice")
    assert cfg.dataset.test_split == "test" and cfg.dataset.test_size == 250
    assert cfg.em.archive == "docs/study/runs"


def test_the_pilot_is_a_grid_of_m_step_settings_on_validation_questions_only():
    cfg = composed("hparams_search=study_pilot", hydra=True)
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.hydra.sweep.dir == "multirun/pilot"
    assert cfg.objective == "test_accuracy"
    assert set(cfg.hydra.sweeper.params) == {"optimizer.lr"}
    study = composed("experiment=study")
    assert (cfg.em.iterations, cfg.em.questions_per_iteration) == (study.em.iterations, study.em.questions_per_iteration)
    validation = load_benchmark(cfg.dataset, cfg.seed)
    test = load_benchmark(composed().dataset, cfg.seed)
    assert len(validation.test) == 200
    assert not {q.id for q in validation.test} & {q.id for q in test.test}  # validation is not the test split
    assert not {q.id for q in validation.test} & {q.id for q in test.train}  # nor what the E-steps draw
