"""How much TRICE's control variate lowers the variance of the gradient estimate that the M-step
trains on, on the real default model (transformers only, no vLLM). Run from the repo root:

    python -m benchmarks.trice_variance

1. A pool: for a few ARC-Easy training questions, hinted samples (the memory initialisation)
   and unhinted samples (the proposals), drawn with `model.generate` and graded.
2. The gradient of the M-step's own loss (`weighted_nll`, weight 1: -log p(z | x) summed over
   tokens) for every pool rationale given the unhinted prompt, on the parameters of the last
   transformer block (a full-model gradient per rationale would not fit in memory). TRICE's
   M-step is ONE optimizer step on -sum_i w_i log p(z_i | x_i), linear in the weights
   (tests/test_trice.py), so the step's gradient is -sum_i w_i g_i: exactly the trained one.
3. Many simulated E-steps: a random minibatch of `TRICEConfig.minibatch_size` questions, one
   random proposal each, the TRICE acceptance and weights (the functions of
   emreason.samplers.trice). Each E-step's estimate is a weight vector w over the pool, so with G
   the pool's gradients and K = G G^T, the variance E||w^T G - E[w^T G]||^2 is the mean of
   (w - w_mean)^T K (w - w_mean). With and without the control variate (and subsampled) on the
   same E-steps.
4. Beside it, the cheap per-step estimate the EM loop logs (`trice_grad_variance_cv` / `_no_cv`:
   `gradient_variance` on logit-bias scores), averaged over the same E-steps.
Prints `name: value` lines; trice_cv_gradient_variance_ratio < 1 means the CV helps.
"""

import random
import time
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from emreason.chat import ChatPrompts
from emreason.config import compose_job
from emreason.data.example import Example
from emreason.data.grading import grade
from emreason.data.loading import load_benchmark
from emreason.model_store import resolve_model
from emreason.samplers.trice import (
    TRICEConfig,
    full_weights,
    gradient_variance,
    leave_one_out_beta,
    signed_item_weights,
    subsampled_weights,
)
from emreason.training.loss import TrainingSequence, collate, logit_bias_scores, weighted_nll

SEED = 0
# Training questions in the pool, and per question the hinted and the unhinted samples.
QUESTIONS = 12
HINTED_SAMPLES = 2
PROPOSALS = 4
MAX_NEW_TOKENS = 96
# Questions per simulated E-step (the sampler's default minibatch), how many E-steps, and L for
# the subsampled estimator.
MINIBATCH = TRICEConfig().minibatch_size
E_STEPS = 4000
SUBSAMPLE_SIZE = 8


@dataclass(frozen=True)
class Sample:
    example: Example
    token_ids: tuple[int, ...]
    correct: bool


def main() -> None:
    started = time.perf_counter()
    # The 2 cores are shared: one thread avoids the stalls of an oversubscribed thread pool.
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    job = compose_job()
    dataset = job.dataset
    examples = load_benchmark(dataset, SEED).train[:QUESTIONS]
    model_dir = resolve_model(job.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompts = ChatPrompts(tokenizer, dataset.prompts)

    hinted = sample(model, tokenizer, prompts, examples, hint=True, n=HINTED_SAMPLES)
    proposals = sample(model, tokenizer, prompts, examples, hint=False, n=PROPOSALS)
    initial_memory = [next((s for s in tries if s.correct), None) for tries in hinted]
    pool = [s for s in initial_memory if s is not None] + [s for tries in proposals for s in tries]
    index = {id(s): i for i, s in enumerate(pool)}
    generated_s = time.perf_counter() - started

    gradients = torch.stack([log_likelihood_gradient(model, tokenizer, prompts, s) for s in pool])
    gram = (gradients.double() @ gradients.double().T)
    pad = tokenizer.pad_token_id
    scores = torch.cat([logit_bias_scores(model, collate([training_sequence(tokenizer, prompts, s)], pad)) for s in pool])

    rng = random.Random(SEED)
    generator = torch.Generator().manual_seed(SEED)
    weights = {"cv": [], "no_cv": [], "subsampled_cv": []}
    betas = []
    logged = {"cv": [], "no_cv": []}
    for _ in range(E_STEPS):
        chosen = rng.sample(range(len(examples)), MINIBATCH)
        drawn = [rng.choice(proposals[q]) for q in chosen]
        # The memory after the MH step: the proposal if it is correct, else the initial one.
        memory = [p if p.correct else initial_memory[q] for q, p in zip(chosen, drawn)]
        valid = torch.tensor([float(m is not None) for m in memory])
        correct = torch.tensor([float(p.correct) for p in drawn])
        beta = leave_one_out_beta(valid, correct)
        betas.append(beta.mean().item())
        items = [index[id(m)] if m is not None else 0 for m in memory] + [index[id(p)] for p in drawn]
        memory_scores = scores[items[:MINIBATCH]] * valid.unsqueeze(1)
        proposal_scores = scores[items[MINIBATCH:]]
        logged["cv"].append(gradient_variance(memory_scores, proposal_scores, valid, correct, beta))
        logged["no_cv"].append(gradient_variance(memory_scores, proposal_scores, valid, correct, torch.zeros_like(beta)))
        cv = signed_item_weights(valid, correct, beta)
        per_item = {
            "cv": full_weights(cv, valid),
            "no_cv": full_weights(signed_item_weights(valid, correct, torch.zeros_like(beta)), valid),
            "subsampled_cv": subsampled_weights(cv, valid, SUBSAMPLE_SIZE, generator),
        }
        for name, item_weights in per_item.items():
            weights[name].append(torch.zeros(len(pool), dtype=torch.float64).index_add_(0, torch.tensor(items), item_weights.double()))

    variance = {name: estimator_variance(torch.stack(w), gram) for name, w in weights.items()}
    print(f"trice_pool_questions: {len(examples)}")
    print(f"trice_pool_valid_initial_memory: {sum(m is not None for m in initial_memory)}")
    print(f"trice_pool_proposal_acceptance_rate: {sum(s.correct for t in proposals for s in t) / (len(examples) * PROPOSALS):.3f}")
    print(f"trice_mean_beta: {sum(betas) / len(betas):.3f}")
    print(f"trice_gradient_parameters: {gradients.shape[1]}")
    print(f"trice_no_cv_gradient_variance: {variance['no_cv']:.6g}")
    print(f"trice_cv_gradient_variance: {variance['cv']:.6g}")
    print(f"trice_subsampled_cv_gradient_variance: {variance['subsampled_cv']:.6g}")
    print(f"trice_cv_gradient_variance_ratio: {variance['cv'] / variance['no_cv']:.4f}")
    print(f"trice_subsampled_over_full_cv_variance_ratio: {variance['subsampled_cv'] / variance['cv']:.4f}")
    # The cheap estimate the EM loop logs per step (on logit-bias scores), averaged over the E-steps.
    print(f"trice_logged_grad_variance_no_cv: {sum(logged['no_cv']) / E_STEPS:.6g}")
    print(f"trice_logged_grad_variance_cv: {sum(logged['cv']) / E_STEPS:.6g}")
    print(f"trice_logged_cv_variance_ratio: {sum(logged['cv']) / sum(logged['no_cv']):.4f}")
    print(f"trice_generation_s: {generated_s:.1f}")
    print(f"trice_benchmark_s: {time.perf_counter() - started:.1f}")


def sample(model, tokenizer, prompts: ChatPrompts, examples: list[Example], *, hint: bool, n: int) -> list[list[Sample]]:
    """n temperature-1 samples per question, graded."""
    tokenizer.padding_side = "left"
    inputs = tokenizer([prompts.text(ex, hint=hint) for ex in examples], return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model.generate(
            **inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
            max_new_tokens=MAX_NEW_TOKENS, num_return_sequences=n, pad_token_id=tokenizer.pad_token_id,
        )
    completions = output[:, inputs.input_ids.shape[1]:].tolist()
    samples = []
    for row, ids in enumerate(completions):
        if tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id) + 1]
        example = examples[row // n]
        samples.append(Sample(example, tuple(ids), grade(tokenizer.decode(ids, skip_special_tokens=True), example).correct))
    return [samples[i : i + n] for i in range(0, len(samples), n)]


def training_sequence(tokenizer, prompts: ChatPrompts, s: Sample) -> TrainingSequence:
    """The sample as the M-step trains on it: given the unhinted prompt, weight 1."""
    return TrainingSequence(tuple(tokenizer(prompts.text(s.example, hint=False)).input_ids), s.token_ids)


def log_likelihood_gradient(model, tokenizer, prompts: ChatPrompts, s: Sample) -> torch.Tensor:
    """grad log p(z | x) given the unhinted prompt, on the last block's parameters, flattened:
    minus the gradient of the M-step's loss on the sequence with weight 1."""
    parameters = list(model.model.layers[-1].parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in parameters:
        p.requires_grad_(True)
    batch = collate([training_sequence(tokenizer, prompts, s)], tokenizer.pad_token_id)
    grads = torch.autograd.grad(-weighted_nll(model, batch), parameters)
    return torch.cat([g.flatten() for g in grads])


def estimator_variance(weights: torch.Tensor, gram: torch.Tensor) -> float:
    """E||w^T G - mean||^2 over the rows of `weights`, through the Gram matrix K = G G^T."""
    centred = weights - weights.mean(dim=0)
    return ((centred @ gram) * centred).sum(dim=1).mean().item()


if __name__ == "__main__":
    main()
