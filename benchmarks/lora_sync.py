"""LoRA: how the engine gets the M-step's adapters. Merged weights (base + adapter delta,
reloaded like full fine-tuning's weights; what emreason does) against a vLLM LoRA request (an
engine started with `enable_lora`, the adapter folder passed with the prompts). Both generate
greedily from the same E-step prompts. The adapters' values do not change the cost, so they
are drawn at random instead of trained."""

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from benchmarks.common import SEED, Setup, report
from benchmarks.e_step import prompt_texts
from emreason.generation.vllm_engine import VLLMGenerator
from emreason.training import lora

PROMPTS = 8
MAX_TOKENS = 32


@dataclass
class Greedy:
    texts: list[str]
    tokens_per_s: float


def greedy(generate, texts: list[str], lora_request=None, max_tokens: int = MAX_TOKENS) -> Greedy:
    """Greedy completions of texts through an `LLM.generate`, timed."""
    from vllm import SamplingParams

    started = time.perf_counter()
    outputs = generate(texts, SamplingParams(temperature=0.0, max_tokens=max_tokens), lora_request=lora_request, use_tqdm=False)
    seconds = time.perf_counter() - started
    completions = [output.outputs[0] for output in outputs]
    return Greedy([c.text for c in completions], sum(len(c.token_ids) for c in completions) / seconds)


def prompts(setup: Setup) -> list[str]:
    return prompt_texts(setup)[:PROMPTS]


def save_random_adapter(setup: Setup, folder: Path) -> None:
    """A policy with the default LoRA config and non-zero adapters, saved both ways into folder."""
    policy = AutoModelForCausalLM.from_pretrained(setup.model_dir, dtype=torch.float32)
    policy = lora.add_adapter(policy, lora.LoraConfig(), SEED)
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    started = time.perf_counter()
    lora.save_merged(policy, policy.state_dict(), folder / "merged")
    setup.tokenizer.save_pretrained(folder / "merged")
    report("lora_merged_save_s", time.perf_counter() - started)
    started = time.perf_counter()
    lora.save_adapter(policy, folder)
    report("lora_adapter_save_s", time.perf_counter() - started)


def merged(setup: Setup, engine: VLLMGenerator, folder: Path) -> Greedy:
    """Merged weights into the running engine, then greedy generation."""
    save_random_adapter(setup, folder)
    started = time.perf_counter()
    engine.load_weights(folder / "merged")
    report("lora_merged_load_s", time.perf_counter() - started)
    result = greedy(engine.llm.generate, prompts(setup))
    report("lora_merged_tokens_per_s", result.tokens_per_s)
    return result


def lora_request(setup: Setup, folder: Path, via_merged: Greedy) -> None:
    """The adapter as a LoRA request to an engine with LoRA enabled (run with no other engine up).
    Each EM iteration brings a new adapter, so the measured request names one the engine has not
    loaded yet."""
    from vllm.lora.request import LoRARequest

    engine = VLLMGenerator(setup.model_dir, setup.generator, SEED, enable_lora=True, max_lora_rank=lora.LoraConfig().rank)
    adapter = str(folder / lora.ADAPTER)
    try:
        greedy(engine.llm.generate, prompts(setup), LoRARequest("warm-up", 1, adapter), max_tokens=4)
        result = greedy(engine.llm.generate, prompts(setup), LoRARequest("iteration", 2, adapter))
    finally:
        engine.close()
    report("lora_request_tokens_per_s", result.tokens_per_s)
    report("lora_merged_speedup_vs_lora_request", via_merged.tokens_per_s / result.tokens_per_s)
    same = sum(a == b for a, b in zip(result.texts, via_merged.texts))
    report("lora_request_same_greedy_text_share", same / len(via_merged.texts))
