"""The floating-point type a job computes in. `auto` (the default of `generator.dtype` and
`optimizer.dtype`) is bfloat16 where the hardware computes it natively and float32 elsewhere:
on a CPU without native bf16 (AVX2 only) bf16 matrix products are emulated and ~3x slower than
float32, while with AVX512_BF16 vLLM ran 1.67x and transformers 1.80x faster in bf16
(docs/performance.md)."""

from pathlib import Path

AUTO = "auto"
# Linux's list of the CPU's features; read at each `auto`, so tests can point it at a fake one.
CPUINFO = Path("/proc/cpuinfo")
# CPU features that compute bf16 natively: AVX-512 BF16 dot products (Zen 4, Cooper Lake on)
# and AMX tiles (Sapphire Rapids on).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path) -> set[str]:
    """The feature flags of the first CPU listed in cpuinfo; empty when it cannot be read (not
    Linux): such a machine gets float32."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def native_bf16() -> str | None:
    """Why this machine computes bfloat16 natively ("CUDA", "CPU flag avx512_bf16"), or None."""
    import torch

    if torch.cuda.is_available():
        return "CUDA" if torch.cuda.is_bf16_supported() else None
    found = [flag for flag in BF16_CPU_FLAGS if flag in cpu_flags(CPUINFO)]
    return f"CPU flag {', '.join(found)}" if found else None


def resolve(dtype: str) -> str:
    """dtype itself, or for `auto` bfloat16 where native_bf16() and float32 elsewhere."""
    if dtype != AUTO:
        return dtype
    return "bfloat16" if native_bf16() else "float32"


def describe(dtype: str) -> str:
    """What dtype resolves to and why, for the job's log ("auto -> bfloat16 (CUDA)")."""
    if dtype != AUTO:
        return f"{dtype} (set in the config)"
    reason = native_bf16()
    if reason:
        return f"auto -> bfloat16 ({reason})"
    return f"auto -> float32 (no native bf16: no CUDA GPU, no CPU flag {' or '.join(BF16_CPU_FLAGS)})"
