"""The vLLM engine that runs every E-step and evaluation of a job, started once.

New M-step weights go into the running engine with `reload_weights` (well under a second
for a small model) instead of a restart (30-90 s on a CPU).
"""

import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from emreason import precision
from emreason.checks import Checked, allowed, at_least
from emreason.generation.completion import Completion
from emreason.generation.vllm_logs import (
    BLOCK_POOL_LOG,
    CPU_WORKER_LOG,
    WEIGHT_LOADING_LOG,
    drop_rank_prefix,
    skip_prefix_cache_resets,
    skip_rounded_weight_warnings,
    skip_thread_count_warnings,
)

log = logging.getLogger(__name__)


class LongPrompt(str, Enum):
    truncate = "truncate"  # cut the middle of the question, keeping options, hint and instructions
    skip = "skip"  # leave the question out: no rationales in the E-step, wrong in the evaluation


@dataclass
class GeneratorConfig(Checked):
    # Weights and compute dtype in the engine (any vLLM dtype); auto = bfloat16 where the
    # hardware computes it natively (CUDA, CPU flag avx512_bf16 or amx_bf16), else float32,
    # which is faster on CPUs whose bf16 is emulated (emreason/precision.py).
    dtype: str = precision.AUTO
    # Longest prompt + rationale the engine accepts, in tokens.
    max_model_len: int = field(default=2048, metadata=at_least(2))
    # Rationale length cap, in tokens, for the E-step and the evaluation.
    max_new_tokens: int = field(default=192, metadata=at_least(1))
    # What happens to a prompt longer than max_model_len - max_new_tokens tokens (vLLM rejects
    # one of max_model_len tokens and cuts the rationale of a shorter one short). Counted per
    # iteration as prompts_truncated / questions_skipped and test_prompts_truncated /
    # test_questions_skipped. Lower max_model_len to cap prompts harder.
    on_long_prompt: LongPrompt = LongPrompt.truncate
    # Skip torch.compile and CUDA graphs: ~30 s engine start instead of ~90 s on a CPU.
    enforce_eager: bool = True
    # Share of GPU memory vLLM may take (GPU only).
    gpu_memory_utilization: float = field(default=0.5, metadata=allowed(lambda share: 0 < share <= 1, "> 0 and <= 1"))
    # KV-cache size in GiB on a CPU (VLLM_CPU_KVCACHE_SPACE); the default reservation fails
    # on small machines. 1 keeps the default job under 8 GiB; 2 made its E-step ~7% faster
    # with 128-token blocks, and no faster with the CPU preset's 64-token blocks.
    cpu_kv_cache_gib: int = field(default=1, metadata=at_least(1))
    # Tokens per KV-cache block; null = vLLM's default (16 on GPUs, 128 on a CPU, whose
    # attention kernel takes multiples of 32).
    block_size: int | None = field(default=None, metadata=at_least(1))
    # GPUs one engine spans (vLLM tensor parallelism).
    tensor_parallel_size: int = field(default=1, metadata=at_least(1))
    # Reuse the KV cache of shared prompt prefixes (chat template, few-shot text).
    enable_prefix_caching: bool = True
    # Run vLLM's engine core in the job's own process. Requests are then scheduled in the
    # order given, so a seeded job samples the same rationales every time (and a resumed job
    # what an uninterrupted one would); in its own process (false) the core batches requests
    # as they arrive, which overlaps scheduling with the model (faster on GPUs) but makes
    # sampling depend on timing.
    engine_in_process: bool = True
    # GPUs only, untested here (no GPU was available): vLLM's sleep mode during each M-step,
    # which moves the weights to CPU memory and drops the KV cache, so the trainer gets the
    # GPU memory the engine held; the engine wakes before the new weights are loaded
    # (docs/training.md has the memory arithmetic).
    sleep_during_m_step: bool = False

    def problems(self) -> list[str]:
        if self.max_new_tokens >= self.max_model_len:
            return [
                f"generator.max_new_tokens={self.max_new_tokens} is out of range: allowed < "
                f"generator.max_model_len={self.max_model_len}, leaving room for the prompt"
            ]
        return []


def _prepare_cpu_environment(config: GeneratorConfig) -> None:
    """vLLM-on-CPU settings that must be in the environment before the engine process starts."""
    # Set, not defaulted: a value inherited from a parent process (a benchmark, a launcher) would
    # otherwise win over the job's config without a word.
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(config.cpu_kv_cache_gib)
    # By default vLLM keeps one core for the main process; it idles during generation.
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{os.cpu_count() - 1}")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    # Intel's OpenMP runtime ships with vllm-cpu and speeds up its kernels when preloaded.
    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    if iomp.exists() and "libiomp5" not in os.environ.get("LD_PRELOAD", ""):
        os.environ["LD_PRELOAD"] = ":".join(filter(None, [os.environ.get("LD_PRELOAD"), str(iomp)]))


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


class VLLMGenerator:
    def __init__(self, model_dir: Path, config: GeneratorConfig, seed: int, **engine_options):
        """engine_options: further `vllm.LLM` arguments (the benchmarks' `enable_lora`)."""
        on_cpu = _on_cpu()
        if on_cpu:
            _prepare_cpu_environment(config)
            logging.getLogger(CPU_WORKER_LOG).addFilter(skip_thread_count_warnings)
        from vllm import LLM

        self.config = config
        dtype = precision.resolve(config.dtype)
        if dtype != "float32":
            logging.getLogger(WEIGHT_LOADING_LOG).addFilter(skip_rounded_weight_warnings)
            log.info("The engine computes in %s: it rounds the float32 weights it loads to %s", dtype, dtype)
        logging.getLogger(BLOCK_POOL_LOG).addFilter(skip_prefix_cache_resets)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if config.engine_in_process else "1"
        excepthook = sys.excepthook
        # Per-request seeds crash vLLM's CPU sampler; `reseed` reseeds the whole engine instead.
        self.llm = LLM(
            model=str(model_dir),
            dtype=dtype,
            max_model_len=config.max_model_len,
            enforce_eager=config.enforce_eager,
            gpu_memory_utilization=config.gpu_memory_utilization,
            tensor_parallel_size=config.tensor_parallel_size,
            enable_prefix_caching=config.enable_prefix_caching,
            block_size=config.block_size,
            seed=seed,
            worker_extension_cls="emreason.generation.worker_extension.WeightSyncExtension",
            enable_sleep_mode=config.sleep_during_m_step,
            # A progress bar for one safetensors file, at the start and at every weight sync.
            use_tqdm_on_load=False,
            **engine_options,
        )
        if on_cpu and config.engine_in_process:
            import torch

            log.info(
                "vLLM has bound this process's %d torch threads to cores %s: torch.set_num_threads does nothing from here on",
                torch.get_num_threads(), os.environ["VLLM_CPU_OMP_THREADS_BIND"],
            )
        drop_rank_prefix(excepthook)

    def generate(
        self, prompts: list[str], *, n: int, temperature: float, max_new_tokens: int
    ) -> list[list[Completion]]:
        from vllm import SamplingParams

        params = SamplingParams(n=n, temperature=temperature, max_tokens=max_new_tokens)
        outputs = self.llm.generate(prompts, params, use_tqdm=True)
        return [
            [
                Completion(c.text, tuple(c.token_ids), finished=c.finish_reason != "length")
                for c in output.outputs
            ]
            for output in outputs
        ]

    def reseed(self, seed: int) -> None:
        """Restart the engine's sampling stream from seed, with an empty prefix cache, so what
        it samples next depends on seed alone and not on what the engine did before."""
        self.llm.collective_rpc("reseed", args=(seed,))
        self.llm.reset_prefix_cache()

    def load_weights(self, weights_dir: Path) -> None:
        """Swap the running engine's weights for the safetensors files in weights_dir."""
        self.llm.collective_rpc("reload_and_repack_weights", kwargs={"weights_path": str(weights_dir)})
        # Cached prompt prefixes hold keys and values computed with the old weights.
        self.llm.reset_prefix_cache()

    @contextmanager
    def asleep(self):
        """With `sleep_during_m_step`, the engine sleeps (level 1: weights offloaded to CPU
        memory, KV cache discarded) inside the block and is awake again after it; otherwise
        the block runs beside the engine."""
        if not self.config.sleep_during_m_step:
            yield
            return
        self.llm.sleep(level=1)
        try:
            yield
        finally:
            self.llm.wake_up()

    def close(self) -> None:
        """Stop the engine process and its workers."""
        engine = getattr(self.llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None:
            core.shutdown()
        del self.llm
        _forget_stored_import_error()


# vLLM keeps the ImportError of its optional torchcodec with its traceback. The traceback's frames
# reach back to the job that first imported that module (inside the engine's start) and hold its
# engine and trainer: in a sweep, every job of the process kept the previous ones' memory (the
# pilot's third job peaked at 18.3 GiB against the first's 12.3).
STORED_IMPORT_ERRORS = (("vllm.multimodal.media.audio", "_torchcodec_import_exc"),)


def _forget_stored_import_error() -> None:
    for module, name in STORED_IMPORT_ERRORS:
        error = getattr(sys.modules.get(module), name, None)
        while isinstance(error, BaseException):
            error.__traceback__ = None
            error = error.__context__
