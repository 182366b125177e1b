"""LoRA (peft): the M-step trains low-rank adapters of the linear layers, the base weights stay
frozen. The engine gets merged weights (base + adapter delta), so its reload path is the same
as for full fine-tuning; a checkpoint also keeps the adapter itself, which is what training
continues from."""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file

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


@torch.no_grad()
def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """The base model's state dict with every adapter's delta added, under the base model's
    own names (what the engine and from_pretrained read). The policy itself is untouched:
    merging in place and unmerging again would round the frozen weights off."""
    base = model.get_base_model()
    merged = {
        name.replace(".base_layer.", "."): tensor
        for name, tensor in base.state_dict().items()
        if ".lora_" not in name
    }
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            weight = f"{name}.weight"
            merged[weight] = merged[weight] + module.get_delta_weight(ADAPTER_NAME).to(merged[weight].dtype)
    return merged


def save_merged(model, folder: Path) -> None:
    model.get_base_model().save_pretrained(folder, state_dict=merged_state_dict(model))


def save_adapter(model, folder: Path) -> None:
    model.save_pretrained(folder / ADAPTER)


def load_adapter(model, folder: Path) -> None:
    weights = load_file(folder / ADAPTER / "adapter_model.safetensors")
    result = set_peft_model_state_dict(model, weights)
    if result.unexpected_keys:
        raise ValueError(f"{folder / ADAPTER} does not match this LoRA config: {result.unexpected_keys[:3]}")
