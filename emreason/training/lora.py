"""LoRA (peft): the M-step trains low-rank adapters of the linear layers, the base weights stay
frozen. The engine gets merged weights (base + adapter delta), so its reload path is the same
as for full fine-tuning; a checkpoint keeps the adapters themselves (the trainer's sharded
state), which is what training continues from."""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from peft.tuners.lora import LoraLayer

from emreason.checks import at_least

ADAPTER = "adapter"
# peft's name for the one adapter the policy has.
ADAPTER_NAME = "default"


@dataclass
class LoraConfig:
    # Rank of each adapter's low-rank update.
    rank: int = field(default=16, metadata=at_least(1))
    # Scale of the update: the adapter adds (alpha / rank) * B @ A to a weight.
    alpha: float = 32.0
    # Dropout on the adapters' input (0 keeps the M-step deterministic).
    dropout: float = 0.0
    # Linear layers that get an adapter (module names as in the Llama/Qwen code).
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


def add_adapter(model, config: LoraConfig, seed: int):
    """The model with fresh adapters (B = 0, so it starts as the base model). Their random
    initialisation is a function of the seed alone."""
    peft_config = PeftLoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=list(config.target_modules)
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return get_peft_model(model, peft_config)


# Where peft puts the base model's names in the state dict of the policy it wraps.
BASE_PREFIX = "base_model.model."


@torch.no_grad()
def merged_state_dict(model, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The base model's state dict with every adapter's delta (alpha / rank) B @ A added, under
    the base model's own names (what the engine and from_pretrained read), from `state`, the
    policy's whole state dict (in one process `model.state_dict()`; sharded, the gathered one).
    The policy itself is untouched: merging in place and unmerging again would round the
    frozen weights off."""
    merged = {
        name.removeprefix(BASE_PREFIX).replace(".base_layer.", "."): tensor
        for name, tensor in state.items()
        if ".lora_" not in name
    }
    for name, module in model.get_base_model().named_modules():
        if isinstance(module, LoraLayer):
            down = state[f"{BASE_PREFIX}{name}.lora_A.{ADAPTER_NAME}.weight"]
            up = state[f"{BASE_PREFIX}{name}.lora_B.{ADAPTER_NAME}.weight"]
            weight = f"{name}.weight"
            delta = (up @ down) * module.scaling[ADAPTER_NAME]
            merged[weight] = merged[weight] + delta.to(merged[weight].dtype)
    return merged


def save_merged(model, state: dict[str, torch.Tensor], folder: Path) -> None:
    """Write the merged weights (`merged_state_dict`) as the base model's safetensors."""
    model.get_base_model().save_pretrained(folder, state_dict=merged_state_dict(model, state))


def save_adapter(model, folder: Path) -> None:
    """Write the adapters alone in peft's format into folder/adapter (what vLLM's LoRA requests load)."""
    model.save_pretrained(folder / ADAPTER)
