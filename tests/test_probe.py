"""The signal probe's figures (emreason/probe.py) from one evaluation, with a fake engine, and
the questions it answers: validation ones, never a test split."""

from fakes import load

from emreason.data.example import AnswerKind, Example
from emreason.evaluation import evaluate
from emreason.probe import signal, validation_questions


class ScriptedGenerator:
    """Answers the i-th prompt with texts[i]; a text ending in '...' was cut at the token limit."""

    def __init__(self, texts: list[str]):
        self.texts = texts

    def generate(self, prompts, *, n, temperature, max_new_tokens):
        from emreason.generation.completion import Completion

        return [[Completion(t, tuple(range(len(t.split()))), finished=not t.endswith("..."))] for t in self.texts[: len(prompts)]]


class PlainPrompts:
    def for_engine(self, example, *, hint):
        from emreason.chat import EnginePrompt

        return EnginePrompt(example.question, truncated=False)


def test_the_probe_reports_accuracy_with_its_interval_the_constant_baseline_kappa_and_cut_rationales():
    examples = [Example(f"q{i}", f"What is {i} + 1?", str(i + 1), AnswerKind.NUMBER) for i in range(4)]
    texts = ["0 + 1 = 1. The answer is 1.", "The answer is 2.", "The answer is 4.", "Adding one gives ..."]
    result = signal("toy", evaluate(ScriptedGenerator(texts), PlainPrompts(), examples, max_new_tokens=8))
    assert (result.questions, result.accuracy) == (4, 0.5)
    assert 0.1 < result.accuracy_low < 0.5 < result.accuracy_high < 0.9  # Wilson, n = 4
    assert result.constant_answer_accuracy == 0.25
    assert result.no_answer == 0.25 and result.cut_at_limit == 0.25
    assert result.kappa is not None and 0 < result.kappa < 1
    assert "accuracy 0.500 [" in result.line()


def test_the_probe_never_answers_test_questions():
    job, gsm8k = validation_questions(["dataset=gsm8k", "dataset.test_split=held_out"], 50)
    test = load("gsm8k").test
    assert len(gsm8k) == 50 and not {q.id for q in gsm8k} & {q.id for q in test}
    job, bbh = validation_questions(["dataset=bbh", "dataset.tasks=[navigate]"], 50)
    assert job.dataset.test_split == "test"
    assert not {q.id for q in bbh} & {q.id for q in load("bbh", "tasks=[navigate]").test}


def test_the_probe_answers_as_many_validation_questions_as_asked():
    """More than the default job's dataset.test_size (100), which once capped them silently."""
    _, gsm8k = validation_questions(["dataset=gsm8k", "dataset.test_split=held_out"], 200)
    _, arc = validation_questions(["dataset=arc_easy", "dataset.test_split=validation"], 200)
    assert len(gsm8k) == len({q.id for q in gsm8k}) == 200 and len(arc) == 200


def test_the_probe_composes_a_job_whose_config_names_hydras_settings():
    """experiment=study sets em.zero_shot_cache from ${hydra:sweep.dir}, which only the command
    had resolved: `emreason-probe experiment=study` once stopped on it. The process's Hydra
    config is left as it was, for whatever composes next."""
    from hydra.core.hydra_config import HydraConfig

    before = HydraConfig.instance().cfg
    job, gsm8k = validation_questions(["experiment=study", "dataset.test_split=held_out"], 10)
    assert job.em.zero_shot_cache.endswith("/zero_shot") and len(gsm8k) == 10
    assert HydraConfig.instance().cfg is before
