"""E-step throughput: vLLM against transformers `generate` on the same prompts, samples,
sampling settings and dtype, vLLM's share of the hardware's decode limit (2 x params FLOP per
generated token at the matmul's GFLOP/s, benchmarks/hardware.py), and what vLLM's prefix
caching and n > 1 sampling save.

Prompts: each question's hinted and unhinted prompt (they share the chat template and the
question, so prefix caching can reuse them), n samples each at temperature 1. Throughput counts
generated tokens up to and including the end-of-sequence token, per second of wall time.
"""

import time
from dataclasses import dataclass, field, replace

from vllm import SamplingParams

from benchmarks.common import SEED, Setup, report, report_target
from benchmarks.hardware import DTYPES, Limits
from emreason.data.example import Example
from emreason.generation.completion import Completion
from emreason.generation.hf_generate import HFGenerator
from emreason.generation.vllm_engine import VLLMGenerator

TEMPERATURE = 1.0
# Issue 15's target: the E-step at least 3x transformers `generate` in bf16. Issue 26's, for the
# Qwen default, whose matrix products dominate: at least 60% of the bf16 decode limit.
SPEEDUP_TARGET = 3.0
DECODE_LIMIT_TARGET_PCT = 60.0


@dataclass
class Sampled:
    # Per prompt, its n completions; prompts in the order of `prompt_examples`.
    completions: list[list[Completion]]
    seconds: float

    @property
    def tokens(self) -> int:
        return sum(len(c.token_ids) for samples in self.completions for c in samples)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


@dataclass
class Throughput:
    # dtype -> generated tokens per second.
    vllm: dict[str, float] = field(default_factory=dict)
    hf: dict[str, float] = field(default_factory=dict)


def prompt_examples(setup: Setup) -> list[tuple[Example, bool]]:
    """(question, hinted) for every E-step prompt."""
    return [(example, hint) for example in setup.questions for hint in (True, False)]


def prompt_texts(setup: Setup) -> list[str]:
    return [setup.prompts.text(example, hint=hint) for example, hint in prompt_examples(setup)]


def run(setup: Setup, engine: VLLMGenerator) -> tuple[Sampled, Throughput]:
    """Prints the figures of the job's engine (in the job's dtype) and of transformers in each
    dtype; returns the engine's samples (the M-step benchmarks train on them)."""
    sizes = setup.sizes
    prompts = prompt_texts(setup)
    n, max_tokens = sizes.samples, sizes.max_new_tokens
    report("e_step_prompts", len(prompts))
    report("e_step_samples_per_prompt", n)
    report("e_step_max_new_tokens", max_tokens)
    report("e_step_dtype_vllm", setup.generator.dtype)

    throughput = Throughput()
    vllm = warm_and_sample(engine, prompts, n=n, max_tokens=max_tokens)
    throughput.vllm[setup.generator.dtype] = vllm.tokens_per_s
    report("e_step_tokens_vllm", vllm.tokens)
    report(f"e_step_tokens_per_s_vllm_{DTYPES[setup.generator.dtype]}", vllm.tokens_per_s)
    prefix_reuse(engine, prompts, vllm, n=n, max_tokens=max_tokens)

    for dtype, short in DTYPES.items():
        hf = sample_hf(setup, dtype, prompts, n=n, max_tokens=max_tokens)
        throughput.hf[dtype] = hf.tokens_per_s
        report(f"e_step_tokens_hf_{short}", hf.tokens)
        report(f"e_step_tokens_per_s_hf_{short}", hf.tokens_per_s)
    return vllm, throughput


def other_dtypes(setup: Setup, throughput: Throughput, limits: Limits) -> None:
    """The engine in the dtypes the job's engine does not use (run with no other engine up),
    then each dtype's speed-up over transformers in the same dtype and share of the decode limit."""
    sizes = setup.sizes
    for dtype in DTYPES.keys() - throughput.vllm.keys():
        engine = VLLMGenerator(setup.model_dir, replace(setup.generator, dtype=dtype), SEED)
        try:
            sampled = warm_and_sample(engine, prompt_texts(setup), n=sizes.samples, max_tokens=sizes.max_new_tokens)
        finally:
            engine.close()
        throughput.vllm[dtype] = sampled.tokens_per_s
        report(f"e_step_tokens_per_s_vllm_{DTYPES[dtype]}", sampled.tokens_per_s)
    for dtype, short in DTYPES.items():
        report(f"e_step_speedup_vs_hf_{short}", throughput.vllm[dtype] / throughput.hf[dtype])
        report(f"e_step_decode_limit_pct_vllm_{short}", 100 * throughput.vllm[dtype] / limits.decode_tokens_per_s(dtype))
    bf16_share = 100 * throughput.vllm["bfloat16"] / limits.decode_tokens_per_s("bfloat16")
    report_target("e_step_decode_limit_pct_vllm_bf16", bf16_share, DECODE_LIMIT_TARGET_PCT, "%", at_least=True)
    bf16_speedup = throughput.vllm["bfloat16"] / throughput.hf["bfloat16"]
    report_target("e_step_speedup_vs_hf_bf16", bf16_speedup, SPEEDUP_TARGET, "x", at_least=True)
    report("e_step_vllm_bf16_vs_fp32", throughput.vllm["bfloat16"] / throughput.vllm["float32"])


def warm_and_sample(engine: VLLMGenerator, prompts: list[str], *, n: int, max_tokens: int) -> Sampled:
    # The first pass over new batch shapes builds the CPU kernels' primitives.
    sample_vllm(engine, prompts, n=1, max_tokens=4)
    return sample_vllm(engine, prompts, n=n, max_tokens=max_tokens)


def prefix_reuse(engine: VLLMGenerator, texts: list[str], cached: Sampled, *, n: int, max_tokens: int) -> None:
    """The same E-step without reading the prefix cache, and without it as n separate prompts."""
    uncached = vllm_tokens_per_s(engine, texts, SamplingParams(
        n=n, temperature=TEMPERATURE, max_tokens=max_tokens, skip_reading_prefix_cache=True
    ))
    repeated = vllm_tokens_per_s(engine, [t for t in texts for _ in range(n)], SamplingParams(
        n=1, temperature=TEMPERATURE, max_tokens=max_tokens, skip_reading_prefix_cache=True
    ))
    report("e_step_tokens_per_s_vllm_no_prefix_cache", uncached)
    report("e_step_prefix_cache_speedup", cached.tokens_per_s / uncached)
    report("e_step_tokens_per_s_vllm_no_prefix_cache_n1_repeated", repeated)
    report("e_step_n_samples_speedup_vs_repeated_prompts", uncached / repeated)


def sample_vllm(engine: VLLMGenerator, texts: list[str], *, n: int, max_tokens: int) -> Sampled:
    # Prompts cached by an earlier measurement would make this one look faster.
    engine.llm.reset_prefix_cache()
    started = time.perf_counter()
    completions = engine.generate(texts, n=n, temperature=TEMPERATURE, max_new_tokens=max_tokens)
    return Sampled(completions, time.perf_counter() - started)


def vllm_tokens_per_s(engine: VLLMGenerator, texts: list[str], params: SamplingParams) -> float:
    """Through the engine directly: VLLMGenerator.generate has no prefix-cache switch."""
    engine.llm.reset_prefix_cache()
    started = time.perf_counter()
    outputs = engine.llm.generate(texts, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    return sum(len(c.token_ids) for output in outputs for c in output.outputs) / seconds


def sample_hf(setup: Setup, dtype: str, texts: list[str], *, n: int, max_tokens: int) -> Sampled:
    generator = HFGenerator(setup.model_dir, dtype, SEED)
    generator.generate(texts, n=1, temperature=TEMPERATURE, max_new_tokens=4)  # warm-up
    started = time.perf_counter()
    completions = generator.generate(texts, n=n, temperature=TEMPERATURE, max_new_tokens=max_tokens)
    return Sampled(completions, time.perf_counter() - started)
