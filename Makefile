# Everything a fresh machine needs goes through these targets.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch; override for a CUDA build, e.g. `make test TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install dev test lint demo bench-cpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

test: dev
	$(BIN)/python -m pytest -q

lint: dev
	$(BIN)/ruff check src tests benchmarks

demo: install
	$(BIN)/statetrack demo

bench-cpu: install
	$(BIN)/python benchmarks/cpu_ops.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
