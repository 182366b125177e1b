"""The EM loop. Read it top to bottom: baseline evaluation, then per iteration an E-step
(the sampler proposes rationales on vLLM), an M-step (weighted fine-tuning in PyTorch on the
accepted rationales given the UNHINTED prompt), a weight sync into the running engine, and an
evaluation (greedy accuracy on held-out questions)."""

import logging
import random
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from transformers import AutoTokenizer

from emreason import checkpoint, rationale_log, zero_shot
from emreason.chat import ChatPrompts
from emreason.data.example import Example
from emreason.data.loading import load_benchmark
from emreason.evaluation import Evaluation, evaluate, evaluate_sampled
from emreason.generation.vllm_engine import GeneratorConfig, VLLMGenerator
from emreason.model_store import ModelConfig, resolve_model
from emreason.samplers import Proposer, SamplerConfig, build_sampler
from emreason.samplers.base import EStepResult, Rationale
from emreason.tracking import Tracker
from emreason.training.loss import TrainingSequence
from emreason.training.m_step import MStepTrainer, OptimizerConfig

log = logging.getLogger(__name__)


@dataclass
class Job:
    """Everything one EM run is made of, built from the config."""

    dataset: object
    model: ModelConfig
    sampler: SamplerConfig
    optimizer: OptimizerConfig
    generator: GeneratorConfig
    iterations: int
    questions_per_iteration: int
    # k of maj@k and pass@k (0: greedy evaluation only), and the temperature of those samples.
    test_samples: int
    test_temperature: float
    seed: int
    run_dir: Path
    # The resolved config and the command-line overrides it was composed from; every
    # checkpoint keeps them, so `resume=DIR` composes the same job again.
    config: dict
    overrides: list[str]
    # Where zero-shot evaluations are shared between jobs (emreason/zero_shot.py); None = none.
    zero_shot_cache: Path | None = None


def run_em(job: Job, tracker: Tracker) -> None:
    random.seed(job.seed)
    torch.manual_seed(job.seed)
    benchmark = load_benchmark(job.dataset, job.seed)
    log.info("%s: %d training and %d test questions", benchmark.name, len(benchmark.train), len(benchmark.test))
    base_model_dir = resolve_model(job.model)
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    prompts = ChatPrompts(tokenizer, job.dataset.prompts, job.generator)
    found = checkpoint.latest(job.run_dir)
    trainer = MStepTrainer(base_model_dir, job.optimizer, tokenizer.pad_token_id, job.seed, checkpoint=found)
    max_new_tokens = job.generator.max_new_tokens
    generator = VLLMGenerator(found / "model" if found else base_model_dir, job.generator, job.seed)
    try:
        sampler = build_sampler(job.sampler, Proposer(generator, prompts, max_new_tokens))
        if found:
            resumed = checkpoint.load(found)
            log.info("Resuming after EM iteration %d from %s", resumed.iteration, found)
            sampler.load_state_dict(resumed.sampler_state)
            # Last: loading the models above must not draw from the restored RNG states.
            checkpoint.restore(resumed)
            first_iteration = resumed.iteration + 1
        else:
            def evaluate_baseline() -> dict:
                baseline, eval_s = timed(evaluation, 0, job, generator, prompts, benchmark.test)
                return {"iteration": 0, **baseline, "eval_s": eval_s}

            key = zero_shot.cache_key(job.config, benchmark.test)
            tracker.log_iteration(zero_shot.baseline(job.zero_shot_cache, key, job.run_dir, evaluate_baseline))
            log.info("EM iteration 0: checkpoint")
            commit_checkpoint(job, stage_weights(job.run_dir, trainer, tokenizer), 0, trainer, sampler)
            first_iteration = 1

        to_sequences = partial(training_sequences, prompts=prompts, tokenizer=tokenizer)
        for iteration in range(first_iteration, job.iterations + 1):
            size = sampler.questions_per_iteration(job.questions_per_iteration, len(benchmark.train))
            questions = questions_for_iteration(benchmark.train, iteration, size, job.seed)
            e_steps, m_steps = [], []
            e_step_s = m_step_s = sync_s = 0.0
            staging = None
            # One (E-step, M-step) pair for the filtered samplers; TRICE takes several.
            for step, minibatch in enumerate(sampler.minibatches(questions), 1):
                start_phase(f"E-step {step}", iteration, job, generator)
                e_step, seconds = timed(sampler.e_step, minibatch)
                e_steps.append(e_step)
                e_step_s += seconds
                if not e_step.accepted:
                    log.warning("Iteration %d: E-step %d accepted no rationale; no M-step.", iteration, step)
                    continue
                log.info("EM iteration %d: M-step %d", iteration, step)
                metrics, seconds = timed(sampler.train, trainer, e_step, to_sequences)
                m_steps.append(metrics)
                m_step_s += seconds
                staging = stage_weights(job.run_dir, trainer, tokenizer)
                log.info("EM iteration %d: weight sync", iteration)
                sync_s += timed(generator.load_weights, staging / "model")[1]
            e_step = EStepResult.merged(e_steps)
            tracker.log_rationales(iteration, e_step.proposals)
            rationale_log.write(job.run_dir, iteration, "e_step", e_step.proposals)
            staging = staging or stage_weights(job.run_dir, trainer, tokenizer)

            result, eval_s = timed(evaluation, iteration, job, generator, prompts, benchmark.test)
            timings = {"e_step_s": e_step_s, "m_step_s": m_step_s, "sync_s": sync_s, "eval_s": eval_s}
            tracker.log_iteration(iteration_metrics(iteration, questions, e_step, result, timings, m_steps))
            log.info("EM iteration %d: checkpoint", iteration)
            commit_checkpoint(job, staging, iteration, trainer, sampler)
    finally:
        generator.close()


def start_phase(phase: str, iteration: int, job: Job, generator: VLLMGenerator) -> None:
    """Reseed the engine from (seed, iteration, phase): a job resumed after a restart samples
    exactly the rationales an uninterrupted one would have (the engine's own stream would not)."""
    log.info("EM iteration %d: %s", iteration, phase)
    generator.reseed(random.Random(f"{job.seed}-{iteration}-{phase}").getrandbits(63))


def evaluation(iteration: int, job: Job, generator: VLLMGenerator, prompts: ChatPrompts, test: list[Example]) -> dict:
    """The test metrics: greedy, and maj@k / pass@k when em.test_samples = k > 0."""
    max_new_tokens = job.generator.max_new_tokens
    start_phase("evaluation", iteration, job, generator)
    greedy = evaluate(generator, prompts, test, max_new_tokens)
    rationale_log.write(job.run_dir, iteration, "evaluation", greedy.rationales)
    metrics = test_metrics(greedy)
    if job.test_samples:
        start_phase("sampled evaluation", iteration, job, generator)
        sampled = evaluate_sampled(generator, prompts, test, max_new_tokens, job.test_samples, job.test_temperature)
        metrics |= {"test_maj_at_k": sampled.majority_accuracy, "test_pass_at_k": sampled.pass_rate}
    return metrics


def iteration_metrics(
    iteration: int, questions: list[Example], e_step: EStepResult, result: dict, timings: dict,
    m_steps: list[dict] = (),
) -> dict:
    # Rationales learned from; TRICE's negatively weighted proposals are not among them.
    kept = [r for r in e_step.accepted if r.weight > 0]
    return {
        "iteration": iteration,
        **result,
        "acceptance_rate": e_step.acceptance_rate,
        "rationales_kept": len(kept),
        "questions_with_rationale": len({r.example.id for r in kept}) / len(questions),
        "mean_rationale_tokens": mean([len(r.completion.token_ids) for r in kept]),
        # Kept rationales that went on after their answer, trained only up to it.
        "rationales_cut_after_answer": sum(r.ran_past_answer for r in kept),
        "tokens_generated": e_step.tokens_generated,
        "tokens_per_accepted_rationale": e_step.tokens_generated / max(len(kept), 1),
        "prompts_truncated": e_step.prompts_truncated,
        # Questions with no proposal: every sampler proposes for each one whose prompt was not skipped.
        "questions_skipped": len({q.id for q in questions} - {r.example.id for r in e_step.proposals}),
        **timings,
        **e_step.metrics,
        **m_step_metrics(m_steps),
    }


def m_step_metrics(m_steps: list[dict]) -> dict:
    """The iteration's M-step metrics: optimizer steps summed over its M-steps, the rest averaged."""
    keys = dict.fromkeys(key for metrics in m_steps for key in metrics)
    return {key: (sum if key == "m_step_optimizer_steps" else mean)([m[key] for m in m_steps if key in m]) for key in keys}


def stage_weights(run_dir: Path, trainer: MStepTrainer, tokenizer) -> Path:
    """The next checkpoint's folder, holding the policy's weights (what the engine loads)."""
    with checkpoint.writing(run_dir):
        staging = checkpoint.staging_dir(run_dir)
        trainer.save_weights(staging / "model")
        tokenizer.save_pretrained(staging / "model")
    return staging


def commit_checkpoint(job: Job, staging: Path, iteration: int, trainer: MStepTrainer, sampler) -> None:
    """Written after the iteration's metrics row: a resume redoes the iterations after the
    last committed one and drops their rows, so no row is lost or doubled."""
    with checkpoint.writing(job.run_dir):
        trainer.save_training_state(staging)
        checkpoint.commit(
            job.run_dir,
            staging,
            iteration=iteration,
            sampler_state=sampler.state_dict(),
            config=job.config,
            overrides=job.overrides,
        )


def questions_for_iteration(train: list[Example], iteration: int, size: int, seed: int) -> list[Example]:
    """The iteration's slice of a seeded walk through the training set (reshuffled each pass).
    A function of the iteration number alone, so a resumed job sees the same questions."""
    start = (iteration - 1) * size
    orders: dict[int, list[int]] = {}
    chosen = []
    for position in range(start, start + min(size, len(train))):
        data_pass, index = divmod(position, len(train))
        if data_pass not in orders:
            orders[data_pass] = list(range(len(train)))
            random.Random(f"{seed}-{data_pass}").shuffle(orders[data_pass])
        chosen.append(train[orders[data_pass][index]])
    return chosen


def training_sequences(accepted: list[Rationale], prompts: ChatPrompts, tokenizer) -> list[TrainingSequence]:
    """Each accepted rationale as the M-step sees it: given the UNHINTED prompt, even when it
    was sampled from the hinted one (the hint belongs to the proposal, not to the model).
    A rationale that goes on after its final answer statement (often to the token limit, inventing
    new questions) is trained up to the end of that statement, then end-of-sequence: what follows
    the answer is not what the model should learn to write."""
    sequences = []
    for rationale in accepted:
        prompt_ids = tokenizer(prompts.text(rationale.example, hint=False)).input_ids
        completion_ids = rationale.completion.token_ids
        if rationale.ran_past_answer:
            completion_ids = _through(completion_ids, rationale.answer_end, tokenizer)
        if (rationale.completion.finished or rationale.ran_past_answer) and completion_ids[-1:] != (
            tokenizer.eos_token_id,
        ):
            completion_ids += (tokenizer.eos_token_id,)
        sequences.append(TrainingSequence(tuple(prompt_ids), completion_ids, rationale.weight))
    return sequences


def _through(token_ids: tuple[int, ...], characters: int, tokenizer) -> tuple[int, ...]:
    """The shortest prefix of the sampled tokens whose text covers the first `characters`
    characters (the sampled tokens are kept, not the text re-tokenized)."""
    for count in range(1, len(token_ids) + 1):
        if len(tokenizer.decode(token_ids[:count], skip_special_tokens=True)) >= characters:
            return token_ids[:count]
    return token_ids


def test_metrics(result: Evaluation) -> dict:
    return {
        "test_accuracy": result.accuracy,
        "test_unparseable_rate": result.unparseable_rate,
        "test_mean_tokens": result.mean_tokens,
        "test_prompts_truncated": result.prompts_truncated,
        "test_questions_skipped": result.questions_skipped,
    }


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
