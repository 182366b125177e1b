"""Code that runs inside vLLM's worker processes (loaded by `worker_extension_cls`)."""

import logging

import torch

from emreason.generation.vllm_logs import (
    WEIGHT_RELOADING_LOG,
    layers_without_checkpoint_weights,
    skip_failed_load_warnings,
)


class WeightSyncExtension:
    """Reloads new weights into the running model, including the CPU kernels' packed copies,
    and reseeds the worker's sampling.

    On a CPU, vLLM packs each linear layer's weights for oneDNN once, at load time. Its
    in-place `reload_weights` repacks the linear layers it loads, but a layer whose weight is
    shared with another one (the LM head tied to the input embeddings, as in SmolLM2) keeps
    its stale packed copy, so generation would still use the old head.
    """

    def reload_and_repack_weights(self, weights_path: str) -> None:
        skip = skip_failed_load_warnings(layers_without_checkpoint_weights(self.model_runner.get_model()))
        logging.getLogger(WEIGHT_RELOADING_LOG).addFilter(skip)
        try:
            self.model_runner.reload_weights(weights_path=weights_path)
        finally:
            logging.getLogger(WEIGHT_RELOADING_LOG).removeFilter(skip)
        if self.device.type != "cpu":
            return
        from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

        for module in self.model_runner.get_model().modules():
            weight = getattr(module, "weight", None)
            # Layers that keep their weight beside the packed copy (embeddings, LM heads).
            if hasattr(module, "cpu_linear") and isinstance(weight, torch.Tensor) and weight.ndim == 2 and weight.numel():
                dispatch_cpu_unquantized_gemm(module, remove_weight=False)

    def reseed(self, seed: int) -> None:
        """Unseeded requests draw their sampling noise from this process's global torch RNG
        (on the CPU: one SplitMix64 seed per batch row and step, see forward_cpu of vLLM's
        TopKTopPSampler)."""
        torch.manual_seed(seed)
