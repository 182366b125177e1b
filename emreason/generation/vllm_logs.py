"""What vLLM and torch print, over and over, that tells a job's reader nothing, silenced where it
is printed. Each logging filter drops a single message of one vLLM logger; that logger's other
messages still show."""

import logging
import sys

import torch
import torch.distributed as dist

# vLLM's loggers (named after the modules that log).
WEIGHT_LOADING_LOG = "vllm.model_executor.models.utils"
WEIGHT_RELOADING_LOG = "vllm.model_executor.model_loader.reload.layerwise"
CPU_WORKER_LOG = "vllm.v1.worker.cpu_worker"
BLOCK_POOL_LOG = "vllm.v1.core.block_pool"


def skip_rounded_weight_warnings(record: logging.LogRecord) -> bool:
    """Drops vLLM's warning for each weight it rounds to a narrower dtype as it loads it (one
    line per tensor, ~120 per load): the trainer's weights are float32 by design, and a bf16
    engine loads them at its start and at every weight sync. Said once instead, in
    VLLMGenerator.__init__."""
    return not str(record.msg).startswith("Attempted to load weight %s with dtype")


def skip_thread_count_warnings(record: logging.LogRecord) -> bool:
    """Drops vLLM's warning that torch.set_num_threads does nothing. Its CPU worker binds the
    engine's threads to cores, then replaces torch.set_num_threads with this warning, and then
    calls it itself, 5 times per engine start. Said once instead, in VLLMGenerator.__init__."""
    return not str(record.msg).startswith("CPU backend doesn't allow to use `torch.set_num_threads`")


def skip_prefix_cache_resets(record: logging.LogRecord) -> bool:
    """Drops vLLM's "Successfully reset prefix cache", said twice at every EM iteration: the
    engine empties its prefix cache after each weight sync and each reseed (VLLMGenerator), by
    design. A reset that fails still warns."""
    return record.msg != "Successfully reset prefix cache"


def layers_without_checkpoint_weights(model: torch.nn.Module) -> frozenset[str]:
    """Class names of the model's layers for which a checkpoint has nothing: layers holding only
    buffers they compute themselves (a rotary embedding's cos/sin table) or only weights of an
    earlier layer (an LM head tied to the input embeddings). A class name that also belongs to a
    layer with weights of its own is left out."""
    without, with_own = set(), set()
    seen = set()
    for layer in model.modules():
        tensors = [*layer.parameters(recurse=False), *layer.buffers(recurse=False)]
        if not tensors:
            continue
        computed = {id(b) for name, b in layer.named_buffers(recurse=False) if name in layer._non_persistent_buffers_set}
        own = [t for t in tensors if id(t) not in seen and id(t) not in computed]
        seen.update(id(t) for t in tensors)
        (with_own if own else without).add(type(layer).__name__)
    return frozenset(without - with_own)


def skip_failed_load_warnings(layers: frozenset[str]):
    """A filter that drops vLLM's "<layer>: Failed to load weights" for these layers. A weight
    sync reloads every layer and, for each one nothing in the checkpoint went to, warns and puts
    its tensors back; for these layers they hold what they should (the computed table, or the
    tied weight, loaded through the embeddings). The warning still shows for any other layer."""

    def keep(record: logging.LogRecord) -> bool:
        return not (record.msg == "%s: Failed to load weights" and record.args and record.args[0] in layers)

    return keep


def drop_rank_prefix(excepthook) -> None:
    """An engine in the job's process starts torch.distributed there, with one rank, and from
    then on torch puts "[rank0]:" before each line of its C++ warnings and of a traceback (it
    wraps sys.excepthook). With one rank the prefix tells nothing apart: the process goes back to
    excepthook, its hook from before the engine, and to C++ log lines without a rank."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() == 1:
        sys.excepthook = excepthook
        torch._C._distributed_c10d._set_global_rank(-1)
