"""Each sampler's accept/keep logic on scripted generations."""

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from emreason.data.example import AnswerKind, Example
from emreason.generation.completion import Completion
from emreason.samplers import build_sampler
from emreason.samplers.base import Keep, Proposer, Rationale, keep_correct, shows_derivation
from emreason.samplers.pps import PPSConfig
from emreason.samplers.rs import RSConfig
from emreason.samplers.star import STaRConfig
from emreason.training.m_step import MStepStats
from fakes import QUESTIONS, ScriptedPrompts

class ScriptedGenerator:
    """Answers each (question, prompt kind) with a fixed list of letters, cycling."""

    def __init__(self, script):
        self.script = script
        self.calls = []

    def generate(self, prompts, *, n, temperature, max_new_tokens):
        self.calls.append({"prompts": prompts, "n": n, "temperature": temperature})
        return [
            [
                Completion(f"Reasoning. The answer is ({self.script[p][i % len(self.script[p])]}).", (7,) * (i + 1), True)
                for i in range(n)
            ]
            for p in prompts
        ]


def run(config, script):
    generator = ScriptedGenerator(script)
    sampler = build_sampler(config, Proposer(generator, ScriptedPrompts(), max_new_tokens=32))
    return sampler.e_step(QUESTIONS), generator


SCRIPT = {
    "q1|plain": ["A", "B", "B"],  # wrong, then right twice
    "q2|plain": ["B"],  # always wrong
    "q1|hinted": ["B"],
    "q2|hinted": ["B", "A"],  # wrong, then right
}


def test_rs_keeps_the_first_correct_of_m_unhinted_samples():
    result, generator = run(RSConfig(budget=3), SCRIPT)
    assert [call["prompts"] for call in generator.calls] == [["q1|plain", "q2|plain"]]
    assert generator.calls[0]["n"] == 3
    assert [(r.example.id, r.answer, r.hinted) for r in result.accepted] == [("q1", "B", False)]
    # The first correct one is the second sample (2 tokens long).
    assert len(result.accepted[0].completion.token_ids) == 2
    assert len(result.proposals) == 6
    assert result.acceptance_rate == pytest.approx(2 / 6)
    assert result.tokens_generated == 2 * (1 + 2 + 3)
    # One at a time: q1 stops at its first correct sample (1 + 2 tokens), q2 draws all 3.
    assert result.metrics["tokens_sequential"] == (1 + 2) + (1 + 2 + 3)


def test_rs_keep_all_keeps_every_correct_sample():
    result, _ = run(RSConfig(budget=3, keep=Keep.all), SCRIPT)
    assert [(r.example.id, r.answer) for r in result.accepted] == [("q1", "B"), ("q1", "B")]


def test_star_rationalizes_only_failures_and_trains_on_the_union():
    script = {**SCRIPT, "q1|plain": ["B"]}
    result, generator = run(STaRConfig(samples_per_question=1, rationalization_samples=2), script)
    assert [call["prompts"] for call in generator.calls] == [["q1|plain", "q2|plain"], ["q2|hinted"]]
    assert [(r.example.id, r.hinted) for r in result.accepted] == [("q1", False), ("q2", True)]
    assert result.acceptance_rate == pytest.approx(2 / 4)


def test_star_original_trains_the_base_model_on_the_iterations_union_for_growing_steps():
    """What one outer iteration trains on is the union of the correct first tries and the
    correct rationalizations; it restarts from the base model, for int(40 * 1.2^(n-1)) steps,
    and the count survives a checkpoint (state_dict / load_state_dict)."""
    script = {**SCRIPT, "q1|plain": ["B"]}
    config = STaRConfig(restart_from_base=True, whole_training_set=True, first_m_step_steps=40, rationalization_samples=2)
    generator = ScriptedGenerator(script)
    sampler = build_sampler(config, Proposer(generator, ScriptedPrompts(), max_new_tokens=32))
    assert sampler.questions_per_iteration(64, 500) == 500

    class RecordingTrainer:
        def __init__(self):
            self.calls = []

        def restart_from_base(self):
            self.calls.append("restart")

        def m_step(self, sequences, optimizer_steps=None):
            self.calls.append((sorted(sequences), optimizer_steps))
            return MStepStats(0.0, optimizer_steps, 0, 0.0)

    trainer = RecordingTrainer()
    union = sorted([("q1", False, "B"), ("q2", True, "A")])
    as_keys = lambda rationales: [(r.example.id, r.hinted, r.answer) for r in rationales]
    for _ in range(2):
        sampler.train(trainer, sampler.e_step(QUESTIONS), as_keys)
    resumed = build_sampler(config, Proposer(generator, ScriptedPrompts(), max_new_tokens=32))
    resumed.load_state_dict(json.loads(json.dumps(sampler.state_dict())))
    resumed.train(trainer, resumed.e_step(QUESTIONS), as_keys)
    assert trainer.calls == ["restart", (union, 40), "restart", (union, 48), "restart", (union, 57)]


def test_star_greedy_decodes_at_temperature_zero():
    _, generator = run(STaRConfig(greedy=True, temperature=0.9), SCRIPT)
    assert {call["temperature"] for call in generator.calls} == {0.0}


def test_pps_samples_only_from_the_hinted_prompt():
    result, generator = run(PPSConfig(samples_per_question=2), SCRIPT)
    assert [call["prompts"] for call in generator.calls] == [["q1|hinted", "q2|hinted"]]
    assert [(r.example.id, r.hinted) for r in result.accepted] == [("q1", True), ("q2", True)]
    assert all(r.weight == 1.0 for r in result.accepted)


def test_unparseable_rationales_are_wrong_not_errors():
    script = {"q1|hinted": ["Z"], "q2|hinted": ["A"]}

    class Rambling(ScriptedGenerator):
        def generate(self, prompts, *, n, temperature, max_new_tokens):
            return [[Completion("I am not sure, maybe it depends.", (1,), False)] * n for _ in prompts]

    sampler = build_sampler(PPSConfig(samples_per_question=1), Proposer(Rambling(script), ScriptedPrompts(), 8))
    result = sampler.e_step(QUESTIONS)
    assert result.accepted == []
    assert [r.answer for r in result.proposals] == [None, None]


def test_majority_vote_and_pass_at_k_on_scripted_samples():
    from emreason.evaluation import evaluate_sampled

    # q1 (gold B): B, A, B -> majority B (right), pass. q2 (gold A): B, A, B -> majority B
    # (wrong) though one sample is right: pass@3 but not maj@3.
    script = {"q1|plain": ["B", "A", "B"], "q2|plain": ["B", "A", "B"]}
    generator = ScriptedGenerator(script)
    result = evaluate_sampled(generator, ScriptedPrompts(), QUESTIONS, 32, k=3, temperature=0.8)
    assert (result.majority_accuracy, result.pass_rate) == (0.5, 1.0)
    assert generator.calls == [{"prompts": ["q1|plain", "q2|plain"], "n": 3, "temperature": 0.8}]
    # A tie goes to the answer given first; no correct sample: neither.
    generator = ScriptedGenerator({"q1|plain": ["B", "A"], "q2|plain": ["C", "B"]})
    result = evaluate_sampled(generator, ScriptedPrompts(), QUESTIONS, 32, k=2, temperature=1.0)
    assert (result.majority_accuracy, result.pass_rate) == (0.5, 0.5)


def test_majority_vote_counts_answers_in_the_graders_form():
    from emreason.data.example import AnswerKind, Example
    from emreason.evaluation import majority_vote
    from emreason.generation.completion import Completion
    from emreason.samplers.base import Rationale

    question = Example("n1", "2 + 3?", "5", AnswerKind.NUMBER)
    samples = [Rationale(question, Completion(t, (1,), True), t, t != "6", hinted=False) for t in ["6", "5", "5.0"]]
    assert majority_vote(samples).answer == "5"  # two votes for 5 against one for 6
    assert majority_vote([Rationale(question, Completion("?", (1,), True), None, False, hinted=False)]) is None


def test_an_iterations_e_steps_merge_into_one_result():
    from emreason.samplers.base import EStepResult

    first, _ = run(RSConfig(budget=3), SCRIPT)
    second = EStepResult(accepted=[], proposals=first.proposals[:1], metrics={"tokens_sequential": 1, "other": 4})
    merged = EStepResult.merged([first, second])
    assert merged.accepted == first.accepted and merged.proposals == first.proposals + first.proposals[:1]
    assert merged.metrics == {"tokens_sequential": (9 + 1) / 2, "other": 4}
    assert EStepResult.merged([first]) is first


NUMBER_QUESTION = Example("n1", "Tom has 20 apples and buys 30 more. How many?", "50", AnswerKind.NUMBER, ())


def rationale(text: str, hinted: bool, example: Example = NUMBER_QUESTION) -> Rationale:
    return Rationale(example, Completion(text, (1,) * 8, True), example.answer, True, hinted)


def test_the_derivation_check_drops_hinted_rationales_that_assert_their_answer():
    reached = rationale("20 + 30 = 50 apples. The answer is \\(\\boxed{50}\\).", hinted=True)
    asserted = rationale("20 + 10 = 30 apples. Therefore, the answer is \\(\\boxed{50}\\).", hinted=True)
    unhinted = rationale("Tom has many apples. The answer is 50.", hinted=False)
    assert [shows_derivation(r) for r in (reached, asserted)] == [True, False]
    result = keep_correct([[asserted, reached], [unhinted]], Keep.all, derivation_check=True)
    assert result.accepted == [reached, unhinted] and result.metrics["dropped_underived"] == 1
    # Off (the default, as in the papers), it keeps both; a letter answer is never checked.
    assert keep_correct([[asserted, reached]], Keep.all).accepted == [asserted, reached]
    assert shows_derivation(rationale("The answer is (A).", hinted=True, example=QUESTIONS[0]))


def test_the_derivation_check_separates_what_blind_readers_judged():
    """On the study's audit (docs/study/audit): the figures docs/study.md states."""
    audit = Path(__file__).parent.parent / "docs" / "study" / "audit" / "gsm8k-seed0.jsonl.gz"
    passed = Counter()
    for record in map(json.loads, gzip.open(audit, "rt")):
        example = Example(record["id"], record["question"], record["gold"], AnswerKind.NUMBER, ())
        passed[record["verdict"], shows_derivation(rationale(record["completion"], record["hinted"], example))] += 1
    assert (passed["supported", True], passed["supported", False]) == (99, 3)
    assert (passed["asserted", True], passed["asserted", False]) == (7, 84)


@pytest.mark.parametrize("config", [RSConfig(derivation_check=True), STaRConfig(derivation_check=True), PPSConfig(derivation_check=True)])
def test_every_filtered_sampler_takes_the_derivation_check(config):
    result, _ = run(config, SCRIPT)
    assert result.metrics["dropped_underived"] == 0  # letter answers: nothing to check
