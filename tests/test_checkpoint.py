"""Checkpoints are swapped in atomically: a resume only ever trusts a complete one."""

import errno
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import initialize_config_dir

from emreason import checkpoint, cli, em
from fakes import write_checkpoint


def test_a_committed_checkpoint_restores_iteration_state_rngs_and_metrics(tmp_path):
    random.seed(3)
    torch.manual_seed(3)
    write_checkpoint(tmp_path, 2)
    expected_python, expected_torch = random.random(), torch.rand(1)
    random.seed(99)
    torch.manual_seed(99)
    # Rows of an iteration that ran after the checkpoint, which the resume redoes.
    for name in checkpoint.HISTORY_FILES:
        (tmp_path / name).write_text("".join(json.dumps({"iteration": i}) + "\n" for i in range(4)))

    found = checkpoint.latest(tmp_path)
    resumed = checkpoint.load(found)
    checkpoint.restore(resumed)
    checkpoint.restore_history(tmp_path, found)
    assert resumed.iteration == 2
    assert resumed.sampler_state == {"memory": {"q1": 2}}
    assert resumed.overrides == ["sampler=pps"]
    assert random.random() == expected_python and torch.equal(torch.rand(1), expected_torch)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [0, 1, 2]
    assert (tmp_path / "rationales.jsonl").read_text() == ""  # none were logged before the checkpoint
    assert "seed: 0" in (tmp_path / "checkpoint" / "config.yaml").read_text()


def test_an_unfinished_staging_folder_is_never_trusted(tmp_path):
    write_checkpoint(tmp_path, 1)
    staging = checkpoint.staging_dir(tmp_path)  # a crash while writing iteration 2
    (staging / "model" / "model.safetensors").write_bytes(b"half")
    assert checkpoint.latest(tmp_path) == tmp_path / "checkpoint"
    assert checkpoint.load(checkpoint.latest(tmp_path)).iteration == 1


def test_a_swap_interrupted_between_its_renames_falls_back_to_the_previous_checkpoint(tmp_path):
    write_checkpoint(tmp_path, 1)
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.previous")  # killed mid-swap
    assert checkpoint.load(checkpoint.latest(tmp_path)).iteration == 1
    write_checkpoint(tmp_path, 2)
    assert checkpoint.load(checkpoint.latest(tmp_path)).iteration == 2
    assert not (tmp_path / "checkpoint.previous").exists()


def test_no_checkpoint_means_a_fresh_start_and_nothing_to_resume(tmp_path):
    assert checkpoint.latest(tmp_path) is None
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"iteration": 0}) + "\n")  # killed before its checkpoint
    checkpoint.restore_history(tmp_path, None)
    assert (tmp_path / "metrics.jsonl").read_text() == ""
    with pytest.raises(checkpoint.NothingToResumeError, match=f"resume={tmp_path}: no complete checkpoint"):
        checkpoint.to_resume(tmp_path)


class FakeTrainer:
    def save_weights(self, folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"weights")

    def save_training_state(self, folder: Path) -> None:
        torch.save({"step": 1}, folder / "optimizer.pt")


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_checkpointing_names_the_folder_keeps_the_previous_checkpoint_and_says_how_to_resume(
    tmp_path, monkeypatch
):
    write_checkpoint(tmp_path, 1)
    job = SimpleNamespace(run_dir=tmp_path, config={}, overrides=[])
    trainer, sampler = FakeTrainer(), SimpleNamespace(state_dict=dict)
    staging = em.stage_weights(tmp_path, trainer, SimpleNamespace(save_pretrained=lambda folder: None))
    monkeypatch.setattr(torch, "save", disk_full)

    with pytest.raises(checkpoint.CheckpointWriteError) as raised:
        em.commit_checkpoint(job, staging, 2, trainer, sampler)
    message = str(raised.value)
    assert raised.value.errno == errno.ENOSPC
    assert "No space left on device" in message and str(tmp_path / "checkpoint.staging") in message
    assert f"{tmp_path / 'checkpoint'} (EM iteration 1) is intact" in message
    assert f"emreason resume={tmp_path}" in message
    assert not staging.exists()
    assert checkpoint.load(checkpoint.latest(tmp_path)).iteration == 1


def test_a_full_disk_while_staging_the_weights_is_the_same_clear_error(tmp_path, monkeypatch):
    write_checkpoint(tmp_path, 1)
    monkeypatch.setattr(FakeTrainer, "save_weights", disk_full)
    with pytest.raises(checkpoint.CheckpointWriteError, match="EM iteration 1\\) is intact"):
        em.stage_weights(tmp_path, FakeTrainer(), SimpleNamespace(save_pretrained=lambda folder: None))
    assert checkpoint.load(checkpoint.latest(tmp_path)).iteration == 1


def test_new_overrides_replace_the_saved_ones_key_by_key():
    saved = ["experiment=tiny", "sampler=rs", "em.iterations=1", "resume=/old"]
    new = ["resume=/runs/a", "em.iterations=4", "sampler.budget=2"]
    assert cli.merge_overrides(saved, new) == ["experiment=tiny", "sampler=rs", "em.iterations=4", "sampler.budget=2"]


def test_resume_composes_the_saved_job_again_with_the_new_overrides(tmp_path):
    write_checkpoint(tmp_path, 1, overrides=["experiment=tiny", "sampler=rs", "seed=7"])
    with initialize_config_dir(config_dir=cli.CONFIG_DIR, version_base="1.3"):
        cfg, overrides = cli.config_to_resume(tmp_path, [f"resume={tmp_path}", "em.iterations=3"])
    assert overrides == ["experiment=tiny", "sampler=rs", "seed=7", "em.iterations=3"]
    assert (cfg.sampler.name, cfg.seed, cfg.em.iterations, cfg.dataset.test_size) == ("rs", 7, 3, 16)
