"""E-step throughput: vLLM against transformers `generate` on the same prompts, samples,
sampling settings and dtype, and what vLLM's prefix caching and n > 1 sampling save.

Prompts: each question's hinted and unhinted prompt (they share the chat template and the
question, so prefix caching can reuse them), n samples each at temperature 1. Throughput counts
generated tokens up to and including the end-of-sequence token, per second of wall time.
"""

import time
from dataclasses import dataclass

from vllm import SamplingParams

from benchmarks.common import SEED, Setup, report, report_target
from emreason.data.example import Example
from emreason.generation.completion import Completion
from emreason.generation.hf_generate import HFGenerator
from emreason.generation.vllm_engine import VLLMGenerator

TEMPERATURE = 1.0
# The target: the E-step at least 3x transformers `generate` in bf16.
SPEEDUP_TARGET = 3.0


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


def prompt_examples(setup: Setup) -> list[tuple[Example, bool]]:
    """(question, hinted) for every E-step prompt."""
    return [(example, hint) for example in setup.questions for hint in (True, False)]


def run(setup: Setup, engine: VLLMGenerator) -> Sampled:
    """Prints the E-step figures; returns vLLM's samples (the M-step benchmarks train on them)."""
    sizes = setup.sizes
    texts = [setup.prompts.text(example, hint=hint) for example, hint in prompt_examples(setup)]
    n, max_tokens = sizes.samples, sizes.max_new_tokens
    report("e_step_prompts", len(texts))
    report("e_step_samples_per_prompt", n)
    report("e_step_max_new_tokens", max_tokens)
    report("e_step_dtype_vllm", setup.generator.dtype)

    # Warm-up: the first pass over new batch shapes builds the CPU kernels' primitives.
    sample_vllm(engine, texts, n=1, max_tokens=4)
    vllm = sample_vllm(engine, texts, n=n, max_tokens=max_tokens)
    report("e_step_tokens_vllm", vllm.tokens)
    report("e_step_tokens_per_s_vllm", vllm.tokens_per_s)
    prefix_reuse(engine, texts, vllm, n=n, max_tokens=max_tokens)

    for dtype, short in (("float32", "fp32"), ("bfloat16", "bf16")):
        hf = sample_hf(setup, dtype, texts, n=n, max_tokens=max_tokens)
        report(f"e_step_tokens_hf_{short}", hf.tokens)
        report(f"e_step_tokens_per_s_hf_{short}", hf.tokens_per_s)
        report(f"e_step_speedup_vs_hf_{short}", vllm.tokens_per_s / hf.tokens_per_s)
    report_target("e_step_speedup_vs_hf_bf16", vllm.tokens_per_s / hf.tokens_per_s, SPEEDUP_TARGET, "x", at_least=True)
    return vllm


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
