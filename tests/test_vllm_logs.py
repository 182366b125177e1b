"""What keeps vLLM's and torch's repeated, harmless lines off the console: each filter drops its
one message, and the other warnings of the same logger still show; one rank prints no rank
prefix."""

import logging
import subprocess
import sys

import pytest
import torch
from torch import nn

from emreason.generation.vllm_logs import (
    BLOCK_POOL_LOG,
    CPU_WORKER_LOG,
    WEIGHT_LOADING_LOG,
    WEIGHT_RELOADING_LOG,
    layers_without_checkpoint_weights,
    skip_failed_load_warnings,
    skip_prefix_cache_resets,
    skip_rounded_weight_warnings,
    skip_thread_count_warnings,
)
from conftest import REPO


def shown(logger_name: str, keep, warnings: list[tuple]) -> list[str]:
    """The messages of warnings (format and arguments, as vLLM logs them) that reach a handler
    of the logger with the filter keep on it."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.addFilter(keep)
    try:
        for warning in warnings:
            logger.warning(*warning)
    finally:
        logger.removeFilter(keep)
        logger.removeHandler(handler)
    return messages


def test_a_bf16_engine_loading_float32_weights_drops_vllms_per_weight_warning_only():
    """vLLM warns once per tensor it rounds (~120 lines at each start and weight sync)."""
    nested = "Attempted to load nested weight 'a.b' into a single parameter 'a'"
    assert shown(WEIGHT_LOADING_LOG, skip_rounded_weight_warnings, [
        # vLLM's own call (vllm/model_executor/models/utils.py).
        ("Attempted to load weight %s with dtype %s into parameter with dtype %s",
         "embed_tokens.weight", torch.float32, torch.bfloat16),
        (nested,),
    ]) == [nested]


def test_the_cpu_worker_no_longer_says_that_it_ignores_torch_set_num_threads():
    """vLLM's CPU worker warns at each call of torch.set_num_threads, 5 times per engine start."""
    no_tcmalloc = "libtcmalloc is not found in LD_PRELOAD. For best performance, ..."
    assert shown(CPU_WORKER_LOG, skip_thread_count_warnings, [
        # vllm/v1/worker/cpu_worker.py
        ("CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding, skip it.",),
        (no_tcmalloc,),
    ]) == [no_tcmalloc]


def test_the_engine_no_longer_says_it_reset_its_prefix_cache_but_still_says_it_failed_to():
    """Said twice at every EM iteration (after the reseed and after the weight sync)."""
    failed = ("Failed to reset prefix cache because some blocks (%d) are not freed yet", 3)
    assert shown(BLOCK_POOL_LOG, skip_prefix_cache_resets, [
        # vllm/v1/core/block_pool.py (at INFO; shown() logs every message as a warning)
        ("Successfully reset prefix cache",),
        failed,
    ]) == ["Failed to reset prefix cache because some blocks (3) are not freed yet"]


class RotaryEmbedding(nn.Module):
    """vLLM's, in small: a cos/sin table it computes, kept out of its state dict."""

    def __init__(self):
        super().__init__()
        self.register_buffer("cos_sin_cache", torch.zeros(4, 2), persistent=False)


class VocabParallelEmbedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(8, 2))


class ParallelLMHead(VocabParallelEmbedding):
    pass


class RMSNorm(nn.Module):
    """A layer with a buffer a checkpoint holds."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.ones(2))


class TinyModel(nn.Module):
    def __init__(self, tied: bool):
        super().__init__()
        self.embed_tokens = VocabParallelEmbedding()
        self.layers = nn.ModuleList([RotaryEmbedding(), RMSNorm()])
        self.lm_head = ParallelLMHead()
        if tied:
            self.lm_head.weight = self.embed_tokens.weight


@pytest.mark.parametrize("tied, without_weights", [(True, {"RotaryEmbedding", "ParallelLMHead"}), (False, {"RotaryEmbedding"})])
def test_layers_a_checkpoint_has_no_weights_for(tied, without_weights):
    assert layers_without_checkpoint_weights(TinyModel(tied)) == without_weights


@pytest.mark.parametrize("tied", [True, False])
def test_a_weight_sync_says_nothing_of_layers_without_weights_but_still_of_layers_that_failed(tied):
    """At every weight sync vLLM said "Failed to load weights" of the rotary embedding (which
    has only its computed table) and of the LM head (tied to the embeddings, whose weight was
    loaded). An untied head that loaded nothing has really failed, and is still reported."""
    keep = skip_failed_load_warnings(layers_without_checkpoint_weights(TinyModel(tied)))
    # vllm/model_executor/model_loader/reload/layerwise.py
    failed = [("%s: Failed to load weights", name) for name in ("RotaryEmbedding", "ParallelLMHead", "RMSNorm")]
    allocating = ("Allocating %.1f MB of device memory to buffers to load %s layers. ...", 1.0, "['A', 'B']")
    assert shown(WEIGHT_RELOADING_LOG, keep, [*failed, allocating]) == [
        *([] if tied else ["ParallelLMHead: Failed to load weights"]),
        "RMSNorm: Failed to load weights",
        "Allocating 1.0 MB of device memory to buffers to load ['A', 'B'] layers. ...",
    ]


# A process with torch.distributed started with one rank, as an engine in the job's process
# starts it; then a C++ warning (an `out` tensor resized) and an uncaught error.
ONE_RANK = """
import sys, tempfile
import torch
import torch.distributed as dist
from emreason.generation.vllm_logs import drop_rank_prefix

excepthook = sys.excepthook
dist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp()}", rank=0, world_size=1)
if sys.argv[1] == "drop":
    drop_rank_prefix(excepthook)
torch.ops.aten.add.out(torch.ones(3), torch.ones(3), out=torch.empty(2))
raise RuntimeError("the job failed")
"""


@pytest.mark.parametrize("prefix", ["keep", "drop"])
def test_one_rank_puts_no_rank_prefix_before_warnings_and_tracebacks(prefix):
    """torch prefixes "[rank0]:" to each line of its C++ warnings and of a traceback once
    torch.distributed has started ("keep": what drop_rank_prefix is for); with one rank
    drop_rank_prefix removes it, and the lines themselves still show."""
    result = subprocess.run([sys.executable, "-c", ONE_RANK, prefix], cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = result.stderr.splitlines()
    assert any("Warning: An output with one or more elements was resized" in line for line in lines), result.stderr
    assert lines[-1].endswith("RuntimeError: the job failed"), result.stderr
    prefixed = [line for line in lines if line.startswith("[rank0]:")]
    assert len(prefixed) == (len(lines) if prefix == "keep" else 0), result.stderr
