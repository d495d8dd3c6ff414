# Set-up is automatic: every target creates .venv (if missing) and installs gflow into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LINT_DIRS := $(wildcard gflow tests benchmarks notebooks)

.PHONY: demo test bench lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(BIN)/gflow demo --out runs/demo

test: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest -q

# The benchmark suite (minutes): installs the PyTorch peers (extra "bench"), records figures in
# benchmarks/results/.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	MPLBACKEND=Agg $(BIN)/python benchmarks/gd_throughput.py
	MPLBACKEND=Agg $(BIN)/python benchmarks/work_precision.py
	MPLBACKEND=Agg $(BIN)/python benchmarks/scaling.py
	MPLBACKEND=Agg $(BIN)/python benchmarks/sharding.py

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

format: $(STAMP)
	$(BIN)/ruff check --fix $(LINT_DIRS)
	$(BIN)/ruff format $(LINT_DIRS)

clean:
	rm -rf $(VENV) runs .pytest_cache
