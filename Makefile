# hrinpaint_jax: `make demo` and `make test` do all set-up on a fresh machine (Python 3.11).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint bench clean test-gimp

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps -e .
	touch $@

venv: $(VENV)/.installed

## demo: a few minutes of training (configs/demo.py) on a bundled photo, inpaint the held-out one;
## then convert the fixture weights and run both networks
demo: venv
	$(BIN)/python train.py --config configs/demo.py --workdir demo_output/train
	$(BIN)/hrinpaint demo --out demo_output --trained demo_output/train

## test: lint, then the whole test suite (4 fake CPU devices, see tests/conftest.py)
test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

## test-gimp: the GIMP 3 plug-in end to end in a real GIMP 3, headless (the first run builds a Debian
## trixie root with debootstrap beside the repository, as root: about 2 min; later runs about 1 min)
test-gimp: venv
	bash plugins/gimp/tools/gimp_e2e.sh test

lint: venv
	$(BIN)/ruff check .

## bench: CPU forward timings of both networks (prints a Markdown table)
bench: venv
	$(BIN)/python benchmarks/forward_cpu.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache .ruff_cache
