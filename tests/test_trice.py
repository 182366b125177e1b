"""TRICE: the estimator's math on tiny tensors, the memory on scripted generations, and one
end-to-end run on the real default model."""

import json

import pytest
import torch
from conftest import run_emreason
from test_samplers import QUESTIONS, ScriptedPrompts

from emreason.generation.completion import Completion
from emreason.samplers import build_sampler
from emreason.samplers.base import Proposer
from emreason.samplers.trice import (
    MemoryInit,
    TRICEConfig,
    full_weights,
    leave_one_out_beta,
    signed_item_weights,
    subsampled_weights,
    systematic_resample,
)

def t(*values):
    return torch.tensor(values, dtype=torch.float32)


# ---- The estimator ----


def test_beta_is_the_acceptance_rate_of_the_other_examples():
    valid, correct = t(1, 1, 1, 0), t(1, 0, 1, 0)
    # Example 0 sees (0 + 1) / 2, example 1 sees (1 + 1) / 2, example 3 (invalid) sees 2 / 3.
    assert leave_one_out_beta(valid, correct).tolist() == pytest.approx([1 / 2, 1, 1 / 2, 2 / 3])


def test_beta_is_zero_when_no_other_example_is_valid():
    # Example 0 is the only valid one: nothing is left for it; example 1 sees example 0.
    assert leave_one_out_beta(t(1, 0), t(1, 0)).tolist() == [0, 1]
    assert leave_one_out_beta(t(0, 0), t(0, 0)).tolist() == [0, 0]


def test_control_variate_weights_case_by_case():
    # 0: proposal correct (accepted); 1: proposal wrong, memory valid;
    # 2: no valid rationale; 3: proposal correct.
    valid, correct = t(1, 1, 0, 1), t(1, 0, 0, 1)
    beta = leave_one_out_beta(valid, correct)
    assert beta.tolist() == pytest.approx([1 / 2, 1, 2 / 3, 1 / 2])
    weights = full_weights(signed_item_weights(valid, correct, beta), valid)
    memory, proposals = weights[:4].tolist(), weights[4:].tolist()
    # A correct proposal is the memory rationale: one sequence of weight (1 - beta) c' / sum c'.
    assert memory == pytest.approx([(1 - 1 / 2) / 3, 1 / 3, 0, (1 - 1 / 2) / 3])
    # A wrong proposal of a valid example is pushed down with -beta c' / sum c'.
    assert proposals == pytest.approx([0, -1 / 3, 0, 0])


def test_without_control_variate_the_memory_weights_are_c_over_sum_c():
    valid, correct = t(1, 1, 0, 1), t(1, 0, 0, 1)
    weights = full_weights(signed_item_weights(valid, correct, torch.zeros(4)), valid)
    assert weights.tolist() == pytest.approx([1 / 3, 1 / 3, 0, 1 / 3, 0, 0, 0, 0])


def test_no_valid_rationale_gives_no_gradient():
    valid, correct = t(0, 0, 0), t(0, 0, 0)
    signed = signed_item_weights(valid, correct, leave_one_out_beta(valid, correct))
    assert full_weights(signed, valid).tolist() == [0] * 6
    assert subsampled_weights(signed, valid, 4).tolist() == [0] * 6


def test_systematic_resampling_counts_are_the_floor_or_ceiling_of_l_p():
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        probabilities = torch.rand(7, generator=generator) * (torch.rand(7, generator=generator) > 0.3)
        probabilities = probabilities / probabilities.sum()
        counts = systematic_resample(probabilities, 5, generator)
        expected = 5 * probabilities.double()
        assert counts.sum() == 5
        assert torch.all(counts >= expected.floor()) and torch.all(counts <= expected.ceil())


def test_subsampled_estimator_is_unbiased_for_the_control_variate_estimator():
    generator = torch.Generator().manual_seed(0)
    valid, correct = t(1, 1, 0, 1, 1, 1), t(1, 0, 0, 0, 1, 0)
    gradients = torch.randn(12, 3, generator=generator)  # one "grad log p" per item
    signed = signed_item_weights(valid, correct, leave_one_out_beta(valid, correct))
    exact = full_weights(signed, valid) @ gradients
    draws = torch.stack([subsampled_weights(signed, valid, 3, generator) @ gradients for _ in range(20000)])
    standard_error = draws.std(dim=0) / 20000**0.5
    assert torch.all((draws.mean(dim=0) - exact).abs() < 4 * standard_error)


# ---- The sampler on scripted generations ----


class QueuedGenerator:
    """Answers each prompt with the next letters of its script, across calls; the i-th
    completion of the whole run has text "#i ..." and token ids (i,)."""

    def __init__(self, script):
        self.script = {prompt: list(letters) for prompt, letters in script.items()}
        self.calls = []
        self.count = 0

    def generate(self, prompts, *, n, temperature, max_new_tokens):
        self.calls.append({"prompts": prompts, "n": n, "temperature": temperature})
        return [[self._next(prompt) for _ in range(n)] for prompt in prompts]

    def _next(self, prompt):
        self.count += 1
        letter = self.script[prompt].pop(0)
        return Completion(f"#{self.count} Reasoning. The answer is ({letter}).", (self.count,), True)


def trice(script, **config):
    generator = QueuedGenerator(script)
    sampler = build_sampler(TRICEConfig(init_samples=2, **config), Proposer(generator, ScriptedPrompts(), 32))
    return sampler, generator


def by_text(result):
    return {r.completion.text: r.weight for r in result.accepted}


def test_first_step_initialises_from_the_hint_then_proposes_unhinted():
    # q1 (gold B): the hinted init finds B on the second try, the proposal is wrong.
    # q2 (gold A): the hinted init fails, the proposal is correct and fills the memory.
    sampler, generator = trice({
        "q1|hinted": ["C", "B"], "q2|hinted": ["B", "B"], "q1|plain": ["A"], "q2|plain": ["A"],
    })
    result = sampler.e_step(QUESTIONS)
    assert [(c["prompts"], c["n"]) for c in generator.calls] == [
        (["q1|hinted", "q2|hinted"], 2),
        (["q1|plain", "q2|plain"], 1),
    ]
    # Both valid; q1's beta is q2's acceptance (1), q2's beta is q1's (0).
    assert by_text(result) == pytest.approx({
        "#2 Reasoning. The answer is (B).": 1 / 2,  # q1's memory
        "#6 Reasoning. The answer is (A).": 1 / 2,  # q2's accepted proposal, (1 - 0) / 2
        "#5 Reasoning. The answer is (A).": -1 / 2,  # q1's wrong proposal, -1 / 2
    })
    assert result.metrics == pytest.approx({
        "trice_acceptance_rate": 1 / 2,
        "trice_mean_beta": 1 / 2,
        "trice_new_questions": 2,
        "trice_valid_rationales": 2,
        "trice_valid_share": 1,
    })
    assert len(result.proposals) == 6


def test_a_wrong_proposal_leaves_the_memory_unchanged_and_it_persists_across_steps():
    sampler, generator = trice({
        "q1|hinted": ["B", "B"], "q2|hinted": ["A", "A"], "q1|plain": ["C", "B"], "q2|plain": ["C", "C"],
    })
    sampler.e_step(QUESTIONS)
    memory_after_first_step = dict(sampler.memory)
    assert memory_after_first_step["q2"].completion.text == "#3 Reasoning. The answer is (A)."

    result = sampler.e_step(QUESTIONS)
    # No new initialisation: only the unhinted proposals were asked for.
    assert [c["prompts"] for c in generator.calls][1:] == [["q1|plain", "q2|plain"], ["q1|plain", "q2|plain"]]
    assert result.metrics["trice_new_questions"] == 0
    # q1's second proposal is correct and replaces its memory; q2's is wrong and does not.
    assert sampler.memory["q1"].completion.text == "#7 Reasoning. The answer is (B)."
    assert sampler.memory["q2"] == memory_after_first_step["q2"]
    assert "#3 Reasoning. The answer is (A)." in by_text(result)


class EveryPromptTooLong(ScriptedPrompts):
    def for_engine(self, example, *, hint):
        return None


@pytest.mark.parametrize("subsample", [False, True])
def test_a_step_whose_prompts_are_all_skipped_trains_nothing_and_logs_finite_metrics(subsample):
    generator = QueuedGenerator({})
    sampler = build_sampler(TRICEConfig(init_samples=2, subsample=subsample), Proposer(generator, EveryPromptTooLong(), 32))
    result = sampler.e_step(QUESTIONS)
    assert result.accepted == [] and result.proposals == [] and generator.calls == []
    assert result.metrics == {
        "trice_acceptance_rate": 0.0,
        "trice_mean_beta": 0.0,
        "trice_new_questions": 2,
        "trice_valid_rationales": 0,
        "trice_valid_share": 0.0,
    }


def test_memory_survives_state_dict_and_load_state_dict():
    script = {"q1|hinted": ["B", "B"], "q2|hinted": ["C", "C"], "q1|plain": ["C"], "q2|plain": ["C"]}
    sampler, _ = trice(script)
    sampler.e_step(QUESTIONS)
    state = json.loads(json.dumps(sampler.state_dict()))
    assert state["memory"]["q1"]["token_ids"] == [1] and state["memory"]["q1"]["answer"] == "B"
    assert state["seen"] == ["q1", "q2"]

    restored, generator = trice({"q1|plain": ["A"], "q2|plain": ["C"]})
    restored.load_state_dict(state)
    assert restored.memory == sampler.memory
    result = restored.e_step(QUESTIONS)
    assert len(generator.calls) == 1  # no initialisation again
    assert by_text(result) == {"#1 Reasoning. The answer is (B).": 1.0}  # beta = 0: q2 has no memory
    assert result.metrics["trice_valid_share"] == 1 / 2


def test_unhinted_initialisation_and_no_control_variate():
    sampler, generator = trice(
        {"q1|plain": ["A", "B", "A"], "q2|plain": ["A", "C", "C"]},
        memory_init=MemoryInit.unhinted,
        control_variate=False,
        temperature=0.7,
    )
    result = sampler.e_step(QUESTIONS)
    assert [(c["prompts"], c["n"], c["temperature"]) for c in generator.calls] == [
        (["q1|plain", "q2|plain"], 2, 0.7),
        (["q1|plain", "q2|plain"], 1, 0.7),
    ]
    assert by_text(result) == {"#2 Reasoning. The answer is (B).": 0.5, "#3 Reasoning. The answer is (A).": 0.5}


def test_subsampled_sampler_trains_on_at_most_l_sequences():
    sampler, _ = trice(
        {"q1|hinted": ["B", "B"], "q2|hinted": ["A", "A"], "q1|plain": ["B"], "q2|plain": ["C"]},
        subsample=True,
        subsample_size=1,
    )
    result = sampler.e_step(QUESTIONS)
    # beta = (0, 1): q1's accepted proposal has weight (1 - 0), q2's memory 1 and its wrong
    # proposal -1, so sum w~ = 3 and the one drawn sequence has weight +-3 / 2.
    assert len(result.accepted) == 1
    assert abs(result.accepted[0].weight) == pytest.approx(3 / 2)


# ---- End to end ----


@pytest.mark.slow
def test_tiny_trice_run_keeps_its_memory_across_iterations(tmp_path):
    # 8 training questions and 8 per iteration: iteration 2 revisits iteration 1's questions.
    result = run_emreason(
        "experiment=tiny", "sampler=trice", "em.iterations=2", "dataset.train_size=8",
        "logger.mode=disabled", f"hydra.run.dir={tmp_path}",
        timeout=20 * 60,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [0, 1, 2]
    first, second = rows[1], rows[2]
    assert first["trice_new_questions"] == 8 and second["trice_new_questions"] == 0
    assert second["trice_valid_rationales"] >= first["trice_valid_rationales"]
    assert second["trice_valid_share"] >= first["trice_valid_share"]
