"""The EM loop. Read it top to bottom: iteration 0 evaluates the model it starts from (the
zero-shot baseline); every later iteration runs an E-step (the sampler proposes rationales on
vLLM), an M-step (weighted fine-tuning in PyTorch on the accepted rationales given the UNHINTED
prompt) and a weight sync into the running engine, then the same evaluation (greedy accuracy on
held-out questions). Each iteration ends with its metrics row and a checkpoint."""

import logging
import random
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from transformers import AutoTokenizer

from emreason import checkpoint, rationale_log, resident_memory, zero_shot
from emreason.chat import ChatPrompts
from emreason.config import Config
from emreason.data.example import Example
from emreason.data.loading import load_benchmark
from emreason.evaluation import Evaluation, accuracy_change, evaluate, evaluate_sampled
from emreason.generation.vllm_engine import VLLMGenerator
from emreason.model_store import resolve_model
from emreason.samplers import Proposer, Sampler, build_sampler
from emreason.samplers.base import EStepResult, Rationale, ToSequences
from emreason.tracking import Tracker
from emreason.training.loss import TrainingSequence
from emreason.training.trainer_processes import Trainer, start_trainer

log = logging.getLogger(__name__)


def run_em(job: Config, run_dir: Path, overrides: list[str], tracker: Tracker) -> None:
    """Run the job in run_dir, continuing after its last checkpoint if it has one. `overrides`
    are the command line's, kept in every checkpoint so `resume=DIR` composes the same job."""
    resident_memory.return_large_blocks()
    resident_memory.keep_fewer_kernels()
    random.seed(job.seed)
    torch.manual_seed(job.seed)
    benchmark = load_benchmark(job.dataset, job.seed)
    log.info("%s: %d training and %d test questions", benchmark.name, len(benchmark.train), len(benchmark.test))
    base_model_dir = resolve_model(job.model)
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    prompts = ChatPrompts(tokenizer, job.dataset.prompts, job.generator)
    found = checkpoint.latest(run_dir)
    # Closed in reverse: the engine, then the trainer (its processes, if any).
    with ExitStack() as running:
        trainer = start_trainer(base_model_dir, job.optimizer, tokenizer.pad_token_id, job.seed, checkpoint=found)
        running.enter_context(closing(trainer))
        generator = VLLMGenerator(found / "model" if found else base_model_dir, job.generator, job.seed)
        running.enter_context(closing(generator))
        context = Context(job, run_dir, overrides, generator, prompts, benchmark.test)
        sampler = build_sampler(job.sampler, Proposer(generator, prompts, job.generator.max_new_tokens))
        first_iteration = 0
        if found:
            resumed = checkpoint.load(found)
            log.info("Resuming after EM iteration %d from %s", resumed.iteration, found)
            sampler.load_state_dict(resumed.sampler_state)
            # Last: loading the models above must not draw from the restored RNG states.
            checkpoint.restore(resumed)
            first_iteration = resumed.iteration + 1

        to_sequences = partial(training_sequences, prompts=prompts, tokenizer=tokenizer)
        for iteration in range(first_iteration, job.em.iterations + 1):
            staging = None
            if iteration == 0:
                # The zero-shot baseline: an evaluation alone (shared between jobs by em.zero_shot_cache).
                key = zero_shot.cache_key(context.saved_config, benchmark.test)
                row = zero_shot.baseline(job.em.zero_shot_cache, key, run_dir, partial(evaluation, 0, context))
            else:
                size = sampler.questions_per_iteration(job.em.questions_per_iteration, len(benchmark.train))
                questions = questions_for_iteration(benchmark.train, iteration, size, job.seed)
                e_step, m_steps, timings, staging = learn(iteration, questions, context, sampler, trainer, tokenizer, to_sequences)
                tracker.log_rationales(iteration, e_step.proposals)
                rationale_log.write(run_dir, iteration, "e_step", e_step.proposals)
                row = iteration_metrics(iteration, questions, e_step, evaluation(iteration, context), timings, m_steps)
            # The peak since the previous row: this iteration and the previous checkpoint's write.
            row["peak_rss_gib"] = resident_memory.peak_gib()
            # What the job holds from one iteration to the next: what grows here, a longer job dies of.
            resident_memory.release_freed()
            row["rss_gib"] = resident_memory.current_gib()
            resident_memory.reset_peak()
            tracker.log_iteration(row)
            log.info("EM iteration %d: checkpoint", iteration)
            commit_checkpoint(context, staging or stage_weights(run_dir, trainer, tokenizer), iteration, trainer, sampler)
            log.info("EM iteration %d: done", iteration)


@dataclass
class Context:
    """What the phases of a run share besides the models."""

    job: Config
    run_dir: Path
    overrides: list[str]
    generator: VLLMGenerator
    prompts: ChatPrompts
    test: list[Example]

    @property
    def saved_config(self) -> dict:
        return self.job.as_dict()


def learn(
    iteration: int, questions: list[Example], context: Context, sampler: Sampler, trainer: Trainer, tokenizer,
    to_sequences: ToSequences,
) -> tuple[EStepResult, list[dict], dict, Path | None]:
    """The iteration's (E-step, M-step, weight sync) pairs: one for the filtered samplers, one per
    minibatch for TRICE. Returns the E-steps as one, each M-step's metrics, the seconds spent in
    each phase, and the staged weights of the last M-step (None when no M-step ran)."""
    e_steps, m_steps = [], []
    timings = {"e_step_s": 0.0, "m_step_s": 0.0, "sync_s": 0.0}
    staging = None
    for step, minibatch in enumerate(sampler.minibatches(questions), 1):
        start_phase(f"E-step {step}", iteration, context)
        e_step, seconds = timed(sampler.e_step, minibatch)
        e_steps.append(e_step)
        timings["e_step_s"] += seconds
        if not e_step.accepted:
            log.warning("Iteration %d: E-step %d accepted no rationale; no M-step.", iteration, step)
            continue
        log.info("EM iteration %d: M-step %d", iteration, step)
        resident_memory.release_freed()
        # With generator.sleep_during_m_step the engine frees its GPU memory for the trainer meanwhile.
        with context.generator.asleep():
            metrics, seconds = timed(sampler.train, trainer, e_step, to_sequences)
        resident_memory.release_freed()
        m_steps.append(metrics)
        timings["m_step_s"] += seconds
        staging = stage_weights(context.run_dir, trainer, tokenizer)
        log.info("EM iteration %d: weight sync", iteration)
        timings["sync_s"] += timed(context.generator.load_weights, staging / "model")[1]
    return EStepResult.merged(e_steps), m_steps, timings, staging


def start_phase(phase: str, iteration: int, context: Context) -> None:
    """Reseed the engine from (seed, iteration, phase): a job resumed after a restart samples
    exactly the rationales an uninterrupted one would have (the engine's own stream would not)."""
    log.info("EM iteration %d: %s", iteration, phase)
    resident_memory.release_freed()
    context.generator.reseed(random.Random(f"{context.job.seed}-{iteration}-{phase}").getrandbits(63))


def evaluation(iteration: int, context: Context) -> dict:
    """The iteration's row of test metrics: greedy, and maj@k / pass@k when em.test_samples =
    k > 0, with the seconds they took (eval_s)."""
    started = time.perf_counter()
    generator, prompts, test, em = context.generator, context.prompts, context.test, context.job.em
    max_new_tokens = context.job.generator.max_new_tokens
    start_phase("evaluation", iteration, context)
    greedy = evaluate(generator, prompts, test, max_new_tokens)
    rationale_log.write(context.run_dir, iteration, "evaluation", greedy.rationales)
    metrics = {"iteration": iteration, **test_metrics(greedy)}
    if iteration > 0:
        zero_shot_grades = {r["example"].id: r["correct"] for r in rationale_log.read(context.run_dir, 0, "evaluation")}
        change = accuracy_change(test, zero_shot_grades, greedy.rationales)
        metrics |= {
            "test_accuracy_change": change.estimate,
            "test_accuracy_change_low": change.low,
            "test_accuracy_change_high": change.high,
        }
    if em.test_samples:
        start_phase("sampled evaluation", iteration, context)
        sampled = evaluate_sampled(generator, prompts, test, max_new_tokens, em.test_samples, em.test_temperature)
        metrics |= {"test_maj_at_k": sampled.majority_accuracy, "test_pass_at_k": sampled.pass_rate}
    return {**metrics, "eval_s": time.perf_counter() - started}


def iteration_metrics(
    iteration: int, questions: list[Example], e_step: EStepResult, evaluated: dict, timings: dict,
    m_steps: list[dict] = (),
) -> dict:
    # Rationales learned from; TRICE's negatively weighted proposals are not among them.
    kept = [r for r in e_step.accepted if r.weight > 0]
    return {
        "iteration": iteration,
        **evaluated,
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


def stage_weights(run_dir: Path, trainer: Trainer, tokenizer) -> Path:
    """The next checkpoint's folder, holding the policy's weights (what the engine loads)."""
    with checkpoint.writing(run_dir):
        staging = checkpoint.staging_dir(run_dir)
        trainer.save_weights(staging / "model")
        tokenizer.save_pretrained(staging / "model")
    return staging


def commit_checkpoint(context: Context, staging: Path, iteration: int, trainer: Trainer, sampler: Sampler) -> None:
    """Written after the iteration's metrics row: a resume redoes the iterations after the
    last committed one and drops their rows, so no row is lost or doubled."""
    with checkpoint.writing(context.run_dir):
        trainer.save_training_state(staging)
        checkpoint.commit(
            context.run_dir,
            staging,
            iteration=iteration,
            sampler_state=sampler.state_dict(),
            config=context.saved_config,
            overrides=context.overrides,
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
        "test_top_answer_share": result.top_answer_share,
        "test_constant_answer_accuracy": result.constant_answer_accuracy,
        "test_answer_kappa": result.answer_kappa,
    }


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
