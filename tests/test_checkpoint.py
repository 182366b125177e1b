"""Checkpoints are swapped in atomically: a resume only ever trusts a complete one."""

import random

import torch

from emreason import checkpoint


def write_checkpoint(run_dir, iteration):
    staging = checkpoint.staging_dir(run_dir)
    checkpoint.commit(run_dir, staging, iteration=iteration, sampler_state={"memory": {"q1": iteration}})


def test_a_committed_checkpoint_restores_iteration_state_and_rngs(tmp_path):
    random.seed(3)
    torch.manual_seed(3)
    write_checkpoint(tmp_path, 2)
    expected_python, expected_torch = random.random(), torch.rand(1)
    random.seed(99)
    torch.manual_seed(99)
    resumed = checkpoint.load(checkpoint.latest(tmp_path))
    assert resumed.iteration == 2
    assert resumed.sampler_state == {"memory": {"q1": 2}}
    assert random.random() == expected_python and torch.equal(torch.rand(1), expected_torch)


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


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    assert checkpoint.latest(tmp_path) is None
