# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest test-all bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/runstore run --input data/sample_input.txt --output data/processed.json --log data/run_log.json
	$(BIN)/runstore show --last
	@echo
	@echo "The run is stored in $$($(BIN)/runstore db path) (set RUNSTORE_DB or --db for another store)."
	@echo "Next: $(BIN)/runstore history, $(BIN)/runstore ui --open, $(BIN)/runstore exec -- CMD"

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check runstore tests benchmarks
	$(BIN)/ruff format --check runstore tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

# Everything, the slow stress and packaging tests too (what .ci/run runs).
test-all: $(STAMP) lint typecheck
	$(BIN)/pytest -q -m ''

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
