"""Performance figures of the default job (`make bench`; docs/performance.md)."""

import os

# Set before any benchmark imports vLLM. Its INFO lines would bury the figures.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
# vLLM's named profiler ranges (model forward, sampling) for benchmarks/e_step_profile.py.
os.environ.setdefault("VLLM_CUSTOM_SCOPES_FOR_PROFILING", "1")
