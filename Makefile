# Quick start: `make demo` runs the default job, `make test` the test suite. Each creates .venv and
# installs what it needs on first use (Python >= 3.11; set PYTHON=python3.12 etc. to choose one).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
WORKDIR ?= runs/demo

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "vlmcls_jax needs Python >= 3.11, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.py
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m vlmcls_jax.main --config configs/demo.py --workdir $(WORKDIR)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs
