# Everything a fresh machine needs goes through these targets.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch; override for a CUDA build, e.g. `make test TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# pytest-xdist workers for `make test` (0: one process); two halve the suite's time on CI's 2 cores
TEST_WORKERS ?= 2

.PHONY: install dev test lint demo bench-cpu table3-plots clean

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
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

lint: dev
	$(BIN)/ruff check src tests benchmarks scripts

demo: install
	$(BIN)/statetrack demo

bench-cpu: install
	$(BIN)/python benchmarks/cpu_ops.py

# Table 3's per-length plots of [0, 1] against [−1, 1] (Mamba and DeltaNet), one per task
# that has finished runs, from the run directories committed under results/table3/.
table3-plots: install
	for task in $$(ls -d results/table3/*/ | xargs -n1 basename | grep -v '^logs$$'); do \
	  models=$$(cd results/table3/$$task && ls -d mamba mamba_neg deltanet deltanet_neg 2>/dev/null); \
	  [ -n "$$models" ] || continue; \
	  MPLBACKEND=Agg $(BIN)/statetrack plot results/table3/$$task --models $$models \
	    --title "$$task: accuracy by length (dotted: chance)" \
	    --out results/table3/$${task}_signed.png || exit 1; \
	done
	MPLBACKEND=Agg $(BIN)/statetrack plot results/table3/parity \
	  --title "parity, all seven models: accuracy by length (dotted: chance)" \
	  --out results/table3/parity_all.png

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
