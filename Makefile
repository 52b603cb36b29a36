# `make demo` and `make test` each create or reuse .venv, install ecgtool into it and run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test test-slow lint bench clean

setup: $(STAMP)

# torch==2.13.0 first: it is the CPU build on this machine's disk, so setup.py's range is then met
# without pulling a multi-GB CUDA build; it is named again beside the extras so that no extra can move it.
# [mcu] (litert-torch, ai-edge-quantizer, tflite-micro: the microcontroller tier; ~1.2 GB, ~3 min here) is
# installed so that its tests run and the demo's pipeline exports litert-int8 (benchmarks/RESULTS.md, issue 13).
# It downgrades typing_extensions 4.16 -> 4.12.2 (litert-converter pins xdsl 0.28, which wants < 4.13);
# nothing in ecgtool's tests needs the newer one. The stamp depends on this file, so a change here reinstalls.
$(STAMP): setup.py pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,mcu]' torch==2.13.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ecgtool pipeline --out demo

# Two worker processes (pytest-xdist), one torch thread each (tests/conftest.py), a test file per worker so that
# module fixtures are built once: on the slowest 2-core CPU here (AMD EPYC Zen 1) 7 min instead of 14.5 serially.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m slow
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q -m hostile

# pyflakes' errors and syntax errors only (unused names, undefined names): what a review would otherwise catch
lint: $(STAMP)
	$(BIN)/ruff check --select F,E9 toolkit tests benchmarks

clean:
	rm -rf demo .pytest_cache
