"""TRICE: the estimator's math on tiny tensors, the memory on scripted generations, and one
end-to-end run on the real default model."""

import json

import pytest
import torch
from conftest import run_job
from emreason.config import ConfigRangeError, compose_job
from fakes import QUESTIONS, ScriptedPrompts

from emreason.generation.completion import Completion
from emreason.samplers import build_sampler
from emreason.samplers.base import Proposer
from emreason.samplers.trice import (
    MemoryInit,
    TRICEConfig,
    full_weights,
    gradient_variance,
    leave_one_out_beta,
    signed_item_weights,
    subsampled_weights,
    systematic_resample,
)
from emreason.training.loss import TrainingSequence, collate, logit_bias_scores
from emreason.training.m_step import MStepStats, MStepTrainer, OptimizerConfig

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
    )
    result = sampler.e_step(QUESTIONS)
    assert [(c["prompts"], c["n"], c["temperature"]) for c in generator.calls] == [
        (["q1|plain", "q2|plain"], 2, 1.0),
        (["q1|plain", "q2|plain"], 1, 1.0),
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


# ---- The trained estimator ----

PROMPT_IDS = {"q1": (1, 2), "q2": (3,)}


def to_sequences(rationales):
    return [TrainingSequence(PROMPT_IDS[r.example.id], r.completion.token_ids, r.weight) for r in rationales]


def log_likelihood(model, prompt, completion):
    ids = torch.tensor([prompt + completion])
    log_probs = torch.log_softmax(model(input_ids=ids).logits[0], dim=-1)
    return sum(log_probs[len(prompt) - 1 + i, token] for i, token in enumerate(completion))


@pytest.mark.parametrize("micro_batch_size", [1, 2, 3])
def test_the_m_step_takes_one_optimizer_step_whose_gradient_is_the_papers_estimator(tiny_model_dir, micro_batch_size):
    # q1: memory #2 (B), wrong proposal #5; q2: no memory, correct proposal #6. c' = (1, 1),
    # beta = (1, 0), so g = 1/2 [grad log p(#2|q1) - grad log p(#5|q1)] + 1/2 grad log p(#6|q2).
    sampler, _ = trice({"q1|hinted": ["C", "B"], "q2|hinted": ["B", "B"], "q1|plain": ["A"], "q2|plain": ["A"]})
    result = sampler.e_step(QUESTIONS)
    # float32: this checks the estimator to float32 rounding; on a CPU with bf16 the default
    # (auto) would compute in bfloat16.
    config = OptimizerConfig(micro_batch_size=micro_batch_size, batch_size=1, dtype="float32")
    trainer = MStepTrainer(tiny_model_dir, config, 0, seed=0)
    steps = []
    trainer._run = lambda run: steps.extend(run) or MStepStats(0.0, len(run), 0, 0.0)
    metrics = sampler.train(trainer, result, to_sequences)
    assert len(steps) == 1 and len(steps[0]) == 3  # one optimizer step, whatever optimizer.batch_size
    assert metrics["trice_grad_variance_cv"] > 0 and metrics["trice_grad_variance_no_cv"] > 0

    model = trainer.model
    model.zero_grad(set_to_none=True)
    estimate = 0.5 * (
        log_likelihood(model, [1, 2], [2]) - log_likelihood(model, [1, 2], [5]) + log_likelihood(model, [3], [6])
    )
    estimate.backward()
    expected = {name: -p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    loss = trainer.accumulate_gradients(steps[0])
    assert loss == pytest.approx(-estimate.item(), rel=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-7, msg=name)


def test_the_control_variate_term_has_mean_zero_over_resampled_proposals(tiny_model_dir):
    """The CV term -(1 / sum c') sum_m beta_m grad log p(z~_m | x_m), z~_m ~ p(z | x_m), averaged
    over 4000 seeded E-steps, on the tiny model's one-token rationales (gradients on a bias on
    the logits). Zero within 5 standard errors; beta including the question itself is not."""
    model = MStepTrainer(tiny_model_dir, OptimizerConfig(), 0, seed=0).model
    prompts, vocabulary, correct_tokens = [(1,), (2, 3), (4,), (5, 6)], 32, torch.arange(32) < 12
    sequences = [TrainingSequence(prompt, (token,)) for prompt in prompts for token in range(vocabulary)]
    scores = logit_bias_scores(model, collate(sequences, 0)).view(len(prompts), vocabulary, vocabulary)
    with torch.no_grad():
        probabilities = torch.stack([torch.softmax(model(input_ids=torch.tensor([p])).logits[0, -1], -1) for p in prompts])
    draws = torch.multinomial(probabilities, 4000, replacement=True, generator=torch.Generator().manual_seed(0)).T
    valid = torch.ones(len(prompts))  # every question has a memory rationale: sum c' is fixed

    def mean_and_standard_error(beta_of):
        terms = []
        for proposal in draws:
            proposal_correct = correct_tokens[proposal].float()
            beta = beta_of(proposal_correct)
            cv = full_weights(signed_item_weights(valid, proposal_correct, beta), valid)
            no_cv = full_weights(signed_item_weights(valid, proposal_correct, torch.zeros_like(beta)), valid)
            # The CV's share of each item's weight; every item that carries one is z~_m.
            difference = (cv - no_cv).view(2, -1).sum(0)
            terms.append((difference.unsqueeze(1) * scores[torch.arange(len(prompts)), proposal]).sum(0))
        terms = torch.stack(terms)
        return terms.mean(0), terms.std(0) / len(terms) ** 0.5

    mean, standard_error = mean_and_standard_error(lambda c: leave_one_out_beta(valid, c))
    assert (mean.abs() < 5 * standard_error + 1e-9).all()
    mean, standard_error = mean_and_standard_error(lambda c: (c.sum() / len(c)).expand(len(c)))
    assert (mean.abs() > 5 * standard_error).any()


def test_gradient_variance_falls_to_zero_with_the_control_variate_as_every_proposal_is_accepted():
    torch.manual_seed(0)
    memory, proposals = torch.randn(4, 6), torch.randn(4, 6)
    valid, all_correct = torch.ones(4), torch.ones(4)
    # Every proposal accepted: the memory is the proposal and beta = 1, so every term is 0.
    assert gradient_variance(proposals, proposals, valid, all_correct, leave_one_out_beta(valid, all_correct)) == 0
    assert gradient_variance(proposals, proposals, valid, all_correct, torch.zeros(4)) > 0
    # The no-CV value by hand: terms s(z_m) / 4, variance 4/3 sum ||term - mean||^2.
    terms = memory / 4
    expected = 4 / 3 * (terms - terms.mean(0)).pow(2).sum()
    assert gradient_variance(memory, proposals, valid, torch.zeros(4), torch.zeros(4)) == pytest.approx(expected.item())


def test_trice_at_a_temperature_other_than_1_is_a_config_error_that_says_why():
    with pytest.raises(ConfigRangeError, match=r"sampler.temperature=0.7: sampler=trice needs 1.0.*Metropolis-Hastings"):
        compose_job(["sampler=trice", "sampler.temperature=0.7"])


def test_an_iteration_is_steps_per_iteration_minibatches():
    sampler, _ = trice({}, minibatch_size=3, steps_per_iteration=2)
    assert sampler.questions_per_iteration(64, 100) == 6
    assert [len(m) for m in sampler.minibatches(list(range(6)))] == [3, 3]


# ---- End to end ----


@pytest.mark.slow
def test_tiny_trice_run_keeps_its_memory_across_iterations(tmp_path):
    # 8 training questions, 2 steps of 4 per iteration: iteration 2 revisits iteration 1's questions.
    rows = run_job(
        tmp_path, "experiment=tiny", "sampler=trice", "em.iterations=2", "dataset.train_size=8",
        "sampler.minibatch_size=4", "sampler.steps_per_iteration=2",
    )
    assert [row["iteration"] for row in rows] == [0, 1, 2]
    first, second = rows[1], rows[2]
    # Averaged over the iteration's two steps: 4 new questions in each step of iteration 1.
    assert first["trice_new_questions"] == 4 and second["trice_new_questions"] == 0
    assert second["trice_valid_rationales"] >= first["trice_valid_rationales"]
    # Every question has been seen before iteration 2's steps: its share is over all 8.
    assert second["trice_valid_share"] == pytest.approx(second["trice_valid_rationales"] / 8)
    for row in (first, second):
        assert row.get("m_step_optimizer_steps", 0) <= 2  # one per E-step with a valid rationale
        if row.get("m_step_optimizer_steps"):
            assert row["trice_grad_variance_no_cv"] >= 0 and row["trice_grad_variance_cv"] >= 0
