# Set-up is automatic: every target creates .venv (if missing) and installs gflow into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LINT_DIRS := $(wildcard gflow tests benchmarks notebooks)

.PHONY: demo test bench gallery lint format docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,docs]"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(BIN)/gflow demo --out runs/demo

# The tests and the notebooks (nbmake, headless), on 2 workers that steal each other's queued
# tests (no worker idles behind a long one); compiled solves are shared between tests, workers
# and the gflow processes they start through a JAX compilation cache that lives as long as the run.
test: $(STAMP)
	cache=$$(mktemp -d) && GFLOW_TEST_JAX_CACHE=$$cache GFLOW_HEADLESS=1 MPLBACKEND=Agg \
	  $(BIN)/python -m pytest -q -n 2 --dist worksteal --nbmake tests notebooks; rc=$$?; rm -rf $$cache; exit $$rc

# The benchmark suite (minutes): installs the PyTorch peers (extra "bench"), records figures in
# benchmarks/results/.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	MPLBACKEND=Agg $(BIN)/python benchmarks/gd_throughput.py
	MPLBACKEND=Agg $(BIN)/python benchmarks/work_precision.py
	MPLBACKEND=Agg $(BIN)/python benchmarks/scaling.py
	MPLBACKEND=Agg $(BIN)/python benchmarks/sharding.py
	MPLBACKEND=Agg $(BIN)/python benchmarks/compile_amortization.py

# README's gallery: the demo's figures and the notebooks' (run headless), as PNG
gallery: $(STAMP)
	MPLBACKEND=Agg $(BIN)/gflow demo --quiet --out runs/demo
	mkdir -p notebooks/gallery && cp runs/demo/trajectories.png runs/demo/gram.png notebooks/gallery/
	cd notebooks && for nb in 0*.py; do GFLOW_FIGURES=gallery GFLOW_HEADLESS=1 MPLBACKEND=Agg \
	  ../$(BIN)/python $$nb > /dev/null || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

# The docs site (mkdocs, material theme, API pages from the docstrings) into site/; --strict:
# any warning (a broken link, a bad Args section) fails the build. Offline.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

format: $(STAMP)
	$(BIN)/ruff check --fix $(LINT_DIRS)
	$(BIN)/ruff format $(LINT_DIRS)

clean:
	rm -rf $(VENV) runs .pytest_cache
