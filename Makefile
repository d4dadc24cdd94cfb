# Two commands on a fresh machine (Python 3.11+ and make):
#   make demo   -> creates .venv, installs the package, runs the main demo
#                  (offline on the bundled Kimi emulator unless MOONSHOT_API_KEY is set)
#   make test   -> creates .venv, installs the test extras, runs ruff, mypy and pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck unit bench notebooks clean setup

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# Re-execute every cookbook notebook on the emulator; store it with its outputs and write
# its plots to docs/img/ (the staleness test in `make test` compares against these).
notebooks: $(STAMP)
	$(BIN)/python cookbook/run_notebooks.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
