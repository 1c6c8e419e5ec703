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

# torch first, pinned to the CPU wheel: an unpinned torch would pull a multi-GB CUDA build.
install: $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e .

# the dev extras include verl (the verl backend's tests run in CI, on the CPU)
install-dev: $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[dev,verl]'

demo: install
	$(VENV)/bin/harness run experiments/quickstart.yaml
	$(VENV)/bin/harness report results/quickstart

test: install-dev
	$(PY) -m pytest -q

bench: install-dev
	$(PY) benchmarks/advantages.py

clean:
	rm -rf results/*/ reports/*/ .pytest_cache
