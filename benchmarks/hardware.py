"""The hardware's limit, the anchor of the E-step and M-step figures: a plain torch matrix
product of the default model's shapes (its hidden and MLP sizes) in float32 and bfloat16, in
GFLOP/s on all of torch's threads, and from it the decode limit (tokens/s at 2 x params FLOP
per generated token) and the training limit (6 x params FLOP per trained token: forward 2,
backward 4; 4 x params under LoRA). Model FLOPs utilisation (MFU) is a measured tokens/s over that limit."""

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM

from benchmarks.common import Setup, report

DTYPES = {"float32": "fp32", "bfloat16": "bf16"}
# Rows of the products: the tokens of a micro-batch (2 sequences of ~250) or of a decode batch
# of n-sample requests.
ROWS = 512


@dataclass(frozen=True)
class Limits:
    params: int
    # dtype -> GFLOP/s of the matrix products
    gflops: dict[str, float]

    def decode_tokens_per_s(self, dtype: str) -> float:
        return self.gflops[dtype] * 1e9 / (2 * self.params)

    def training_tokens_per_s(self, dtype: str, frozen_base: bool = False) -> float:
        """6 x params FLOP per token (forward 2, backward 4); 4 x params with a frozen base under
        LoRA, whose backward computes the activations' gradients but no weight gradients (the
        adapters, under 2% of the parameters, are left out). Recomputed activations do not count:
        MFU counts the model's FLOPs, not the hardware's."""
        return self.gflops[dtype] * 1e9 / ((4 if frozen_base else 6) * self.params)


def run(setup: Setup, seconds: float = 2.0) -> Limits:
    """Prints each dtype's GFLOP/s and the limits it gives; seconds: timed per dtype."""
    config = AutoConfig.from_pretrained(setup.model_dir)
    params = parameter_count(config)
    report("model_params_m", params / 1e6)
    report("matmul_threads", torch.get_num_threads())
    report("matmul_shape", f"{ROWS}x{config.hidden_size} @ {config.hidden_size}x{config.intermediate_size} and back")
    gflops = {}
    for dtype, short in DTYPES.items():
        gflops[dtype] = matmul_gflops(ROWS, config.hidden_size, config.intermediate_size, getattr(torch, dtype), seconds)
        report(f"matmul_gflops_{short}", gflops[dtype])
    limits = Limits(params, gflops)
    for dtype, short in DTYPES.items():
        report(f"decode_limit_tokens_per_s_{short}", limits.decode_tokens_per_s(dtype))
        report(f"training_limit_tokens_per_s_{short}", limits.training_tokens_per_s(dtype))
    return limits


def parameter_count(config) -> int:
    """The model's parameters, a tied embedding counted once (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def matmul_gflops(rows: int, hidden: int, mlp: int, dtype: torch.dtype, seconds: float) -> float:
    """An MLP's two products (rows x hidden -> mlp -> hidden) with its weights' layout
    (nn.Linear's (out, in): an emulated bf16 product is several times slower with the
    other one), repeated for `seconds`."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, hidden, generator=generator).to(dtype)
    up = torch.randn(mlp, hidden, generator=generator).to(dtype)
    down = torch.randn(hidden, mlp, generator=generator).to(dtype)
    flop_per_pass = 2 * (2 * rows * hidden * mlp)
    F.linear(F.linear(x, up), down)  # warm-up: the first call picks the kernels
    passes, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        F.linear(F.linear(x, up), down)
        passes += 1
    return passes * flop_per_pass / elapsed / 1e9
