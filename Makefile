# Two commands on a fresh machine: `make demo` and `make test` (CONTRACT section 1).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[gost]'
	touch $@

$(TSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,gost]'
	touch $@ $(STAMP)

demo: $(STAMP)
	$(BIN)/licgate demo

test: $(TSTAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The layers of docs/architecture.md are import-linter contracts (pyproject.toml): an upward import fails.
lint: $(TSTAMP)
	$(BIN)/ruff check core gateway adapters signing mocks schemas tests benchmarks
	$(BIN)/lint-imports --no-cache

bench: $(TSTAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
