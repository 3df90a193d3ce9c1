# Two commands matter on a fresh clone: `make serve` and `make test` (both create .venv on first use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest conformance bench serve example clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks)

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

conformance: $(STAMP)
	$(BIN)/cra conformance tests/conformance

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_core.py --fast

example: $(STAMP)
	test -d example-atlas || $(BIN)/cra init example-atlas

# Serves the example Atlas on http://127.0.0.1:8420 with SQLite storage in ./cra.db (Ctrl-C stops it).
serve: example
	$(BIN)/cra validate example-atlas
	$(BIN)/cra serve --atlas example-atlas --storage sqlite:///cra.db

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis example-atlas cra.db cra.db-wal cra.db-shm
