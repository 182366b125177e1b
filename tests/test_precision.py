"""`auto` precision: bfloat16 where the hardware computes it natively, float32 elsewhere, an
explicit dtype kept; the job's config records the choice."""

import pytest
import torch
from emreason import precision
from emreason.config import compose_job

AVX2_FLAGS = "fpu sse sse2 avx avx2 fma bmi2"


def fake_cpu(monkeypatch, tmp_path, flags: str) -> None:
    """A machine without CUDA whose /proc/cpuinfo lists flags (twice, as for two cores)."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("".join(f"processor\t: {n}\nmodel name\t: Fake CPU\nflags\t\t: {flags}\n\n" for n in range(2)))
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (AVX2_FLAGS, "float32"),
        (AVX2_FLAGS + " avx512f avx512_bf16", "bfloat16"),
        (AVX2_FLAGS + " amx_tile amx_bf16", "bfloat16"),
        # AVX-512 without its BF16 extension (Skylake, Ice Lake) still emulates bf16.
        (AVX2_FLAGS + " avx512f avx512bw", "float32"),
    ],
    ids=["avx2", "avx512_bf16", "amx", "avx512_without_bf16"],
)
def test_auto_is_bfloat16_only_on_a_cpu_that_computes_it_natively(monkeypatch, tmp_path, flags, expected):
    fake_cpu(monkeypatch, tmp_path, flags)
    assert precision.resolve("auto") == expected
    assert precision.describe("auto").startswith(f"auto -> {expected}")


def test_a_cpu_whose_flags_cannot_be_read_gets_float32(monkeypatch, tmp_path):
    fake_cpu(monkeypatch, tmp_path, AVX2_FLAGS)
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "missing")
    assert precision.resolve("auto") == "float32"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_an_explicit_dtype_wins_over_auto(monkeypatch, tmp_path, dtype):
    for flags in (AVX2_FLAGS, AVX2_FLAGS + " avx512_bf16"):
        fake_cpu(monkeypatch, tmp_path, flags)
        assert precision.resolve(dtype) == dtype


@pytest.mark.parametrize("flags, expected", [(AVX2_FLAGS, "float32"), (AVX2_FLAGS + " avx512_bf16", "bfloat16")])
def test_the_jobs_config_records_the_resolved_dtypes_and_the_log_says_why(monkeypatch, tmp_path, caplog, flags, expected):
    fake_cpu(monkeypatch, tmp_path, flags)
    with caplog.at_level("INFO"):
        job = compose_job(["optimizer.dtype=float32"])
    assert (job.generator.dtype, job.optimizer.dtype) == (expected, "float32")
    assert job.as_dict()["generator"]["dtype"] == expected
    assert f"generator.dtype: auto -> {expected}" in caplog.text
    assert "optimizer.dtype: float32 (set in the config)" in caplog.text

