"""Where one E-step's time goes: the default job's E-step (its hinted prompts, samples and token
cap) on the job's engine under torch's profiler, split into the model's weight matrix products,
its attention over the KV cache, the rest of the model (norms, activations, rotary embeddings,
dtype casts), sampling, and the engine around the model (scheduling, input preparation, output
processing). The shares are of the E-step's wall time; the engine runs in the job's process
(generator.engine_in_process), so one profiler sees all of it.

Its tokens/s is the default job's E-step speed, reported with its share of the decode limit
beside the E-step benchmark's smaller batch (benchmarks/e_step.py). Then the same prompts'
prefill alone (one new token each), with one sample per prompt and with the job's samples: vLLM
shares only full KV-cache blocks between the samples of a prompt, so each sample recomputes the
prompt's last, partial block.

Part of `make bench`; alone (the hardware limit, then the profile): `python -m benchmarks.e_step_profile`.
"""

import time

import torch

from benchmarks import hardware
from benchmarks.common import SEED, Setup, load_setup, report, report_target
from benchmarks.e_step import DECODE_LIMIT_TARGET_PCT, TEMPERATURE
from benchmarks.hardware import DTYPES, Limits
from emreason.generation.vllm_engine import VLLMGenerator

# vLLM's profiler ranges (VLLM_CUSTOM_SCOPES_FOR_PROFILING=1, set by benchmarks/__main__.py) and
# its CPU kernels, by event name.
FORWARD = "gpu_model_runner: forward"
LOGITS = "gpu_model_runner: postprocess"  # the vocabulary projection of the last positions
SAMPLE = "gpu_model_runner: sample"
MATMUL = "_C::onednn_mm"
ATTENTION = ("_C::cpu_attention_with_kv_cache", "_C::cpu_attn_reshape_and_cache")


def run(setup: Setup, engine: VLLMGenerator, limits: Limits) -> None:
    """Prints the profiled E-step's shape, tokens/s, share of the decode limit and time shares."""
    questions, samples, max_new_tokens = setup.sizes.profiled_e_step or (
        setup.job.em.questions_per_iteration,
        setup.job.sampler.samples_per_question,
        setup.job.generator.max_new_tokens,
    )
    prompts = [setup.prompts.text(example, hint=True) for example in setup.train[:questions]]
    report("e_step_job_shape", f"{len(prompts)} hinted prompts x {samples} samples, <= {max_new_tokens} tokens")
    engine.llm.reset_prefix_cache()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        started = time.perf_counter()
        outputs = engine.generate(prompts, n=samples, temperature=TEMPERATURE, max_new_tokens=max_new_tokens)
        wall_s = time.perf_counter() - started
    tokens = sum(len(c.token_ids) for completions in outputs for c in completions)
    short = DTYPES[setup.generator.dtype]
    tokens_per_s = tokens / wall_s
    report("e_step_job_tokens", tokens)
    report(f"e_step_job_tokens_per_s_vllm_{short}", tokens_per_s)
    share = 100 * tokens_per_s / limits.decode_tokens_per_s(setup.generator.dtype)
    report(f"e_step_job_decode_limit_pct_vllm_{short}", share)
    if short == "bf16":
        report_target("e_step_job_decode_limit_pct_vllm_bf16", share, DECODE_LIMIT_TARGET_PCT, "%", at_least=True)
    for part, seconds in time_shares(profile.key_averages(), wall_s).items():
        report(f"e_step_profile_{part}_pct", 100 * seconds / wall_s)
    prefill_s = {}
    for n in sorted({1, samples}):
        engine.llm.reset_prefix_cache()
        started = time.perf_counter()
        engine.generate(prompts, n=n, temperature=TEMPERATURE, max_new_tokens=1)
        prefill_s[n] = time.perf_counter() - started
        report(f"e_step_job_prefill_s_{n}_samples", prefill_s[n])
    report("e_step_job_prefill_pct", 100 * prefill_s[samples] / wall_s)


def time_shares(events, wall_s: float) -> dict[str, float]:
    """Seconds per part of the E-step from the profiler's per-event totals (microseconds of
    wall time on the engine's thread, nested events included in their parents)."""
    total_s = {event.key: event.cpu_time_total / 1e6 for event in events}
    matmul = total_s.get(MATMUL, 0.0)
    attention = sum(total_s.get(name, 0.0) for name in ATTENTION)
    model = total_s.get(FORWARD, 0.0) + total_s.get(LOGITS, 0.0)
    sampling = total_s.get(SAMPLE, 0.0)
    return {
        "matmul": matmul,
        "attention": attention,
        "other_model": model - matmul - attention,
        "sampling": sampling,
        "engine": wall_s - model - sampling,
    }


def main() -> None:
    setup = load_setup()
    limits = hardware.run(setup)
    engine = VLLMGenerator(setup.model_dir, setup.generator, SEED)
    try:
        run(setup, engine, limits)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
