# Quick start: `make run` runs the main job (the toy world), `make test` the test suite. Each creates .venv and
# installs what it needs on first use (Python >= 3.11; set PYTHON=python3.12 etc. to choose one).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
WORKDIR ?= runs/toyworld

.PHONY: run run-seeds quick demo test clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "vlmcls_jax needs Python >= 3.11, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.py
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The EVA-CLIP reference (open_clip + timm + torchvision for torch 2.13) goes to its own folder, never into
# site-packages: the registry's torchvision is a CUDA build that breaks `import transformers.image_utils` beside
# CPU torch (tests/tiny_open_clip.py, `import_open_clip`).
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps --target $(VENV)/openclip-ref open-clip-torch==3.3.0 \
		timm==1.0.31 torchvision==0.28.0 ftfy==6.3.1 wcwidth==0.9.4
	touch $@

# The whole study in miniature on the CPU (~15 min on 2 cores): WORKDIR/report.md.
run: $(VENV)/.installed
	$(BIN)/python -m vlmcls_jax.main --config configs/toyworld.py --workdir $(WORKDIR)

# Three whole runs (seeds 0, 1, 2): each accuracy's mean and 95% interval, verdicts over seeds.
run-seeds: $(VENV)/.installed
	$(BIN)/python -m vlmcls_jax.main --config configs/toyworld.py --config.seeds=3 --workdir runs/toyworld_seeds

# The same with fewer steps and smaller towers (~3 min; numbers near chance, the machinery end to end).
quick: $(VENV)/.installed
	$(BIN)/python -m vlmcls_jax.main --config configs/toyworld.py:quick --workdir runs/toyworld_quick

# A random tiny LLaVA through the converters and both inference modes (~15 s).
demo: $(VENV)/.installed
	$(BIN)/python -m vlmcls_jax.main --config configs/demo.py --workdir runs/demo

# Two workers (pytest-xdist), whole files each: compiling is single-threaded, so the 2 cores stay busy
# (16 min instead of 24 here).
# --durations=15: CI's log names the slowest tests (what tests/conftest.py's SLOW list is kept from).
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 tests

.PHONY: test-fast lint

# The edit-test loop: every test not marked `slow` (tests/slow_tests.txt lists them and why):
# 754 of 916 tests in 1.5 min here alone (2 min with a cold compile cache; 1 min with -n 2).
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m "not slow" tests

# Lint and import order (ruff.toml); CI runs it before the tests.  `ruff check --fix .` sorts imports.
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs
