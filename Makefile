# `make demo` and `make test` each create or reuse .venv, install ecgtool into it and run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test test-slow bench clean

setup: $(STAMP)

# torch==2.13.0 first: it is the CPU build on this machine's disk, so setup.py's range is then met
# without pulling a multi-GB CUDA build.
$(STAMP): setup.py pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ecgtool pipeline --out demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q -m hostile

clean:
	rm -rf demo .pytest_cache
