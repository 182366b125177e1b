import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests: no time limit per example (these machines are busy and timing is not what they
# test), and the same examples on every run.
settings.register_profile("emreason", deadline=None, derandomize=True)
settings.load_profile("emreason")

REPO = Path(__file__).resolve().parent.parent
EMREASON = str(Path(sys.executable).parent / "emreason")


@pytest.fixture(autouse=True)
def own_wandb_service(monkeypatch):
    """A test's subprocesses start their own W&B service. A test that used wandb in this process
    leaves WANDB_SERVICE set, and jobs inheriting it share that service: a job killed in one
    test then keeps its run id "in use" there, and its resumed rerun cannot open it."""
    monkeypatch.delenv("WANDB_SERVICE", raising=False)


def run_emreason(*overrides: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run the `emreason` command from the repository root, as a user would."""
    return subprocess.run(
        [EMREASON, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )


def run_job(run_dir: Path, *overrides: str, timeout: int = 20 * 60) -> list[dict]:
    """Run one job (W&B off) in run_dir; it must succeed. Its metrics rows."""
    from emreason.metrics_file import read_metrics

    result = run_emreason(*overrides, "logger.mode=disabled", f"hydra.run.dir={run_dir}", timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return read_metrics(run_dir)


@pytest.fixture(scope="session")
def smoke_model_dir():
    """The fast embedded model of experiment=tiny (SmolLM2-135M-Instruct), converted once into
    the cache."""
    from emreason.config import compose_job
    from emreason.model_store import resolve_model

    return resolve_model(compose_job(["experiment=tiny"]).model)


@pytest.fixture(scope="session")
def tiny_multirun(tmp_path_factory):
    """One small real sweep, shared by the tests that need finished runs: one tiny EM
    iteration of each sampler on the default model, logged to W&B offline.
    Yields (sweep dir, completed process); job i ran sampler TINY_SWEEP_SAMPLERS[i]."""
    sweep_dir = tmp_path_factory.mktemp("multirun")
    result = run_emreason(
        "-m",
        "experiment=tiny",
        f"sampler={','.join(TINY_SWEEP_SAMPLERS)}",
        "logger.mode=offline",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return sweep_dir, result


TINY_SWEEP_SAMPLERS = ["rs", "star", "pps"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Llama (fakes.tiny_llama; tied embeddings, like SmolLM2), saved as a model folder."""
    from fakes import tiny_llama

    folder = tmp_path_factory.mktemp("tiny_llama")
    tiny_llama().save_pretrained(folder)
    return folder
