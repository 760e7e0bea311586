# The two commands a newcomer needs:
#   make run    install everything and start Fetlock with a demo practice
#   make test   install everything and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= var

.PHONY: run test install system-deps lint test-sqlite test-postgresql clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	FETLOCK_DATA_DIR=$(DATA_DIR) $(BIN)/fetlock demo
	FETLOCK_DATA_DIR=$(DATA_DIR) $(BIN)/fetlock serve

system-deps:
	bash scripts/install-system-deps.sh
	bash scripts/ensure-postgres.sh

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test-sqlite: install
	FETLOCK_TEST_DATABASE=sqlite $(BIN)/pytest

test-postgresql: install system-deps
	FETLOCK_TEST_DATABASE=postgresql $(BIN)/pytest

test: install system-deps lint test-sqlite test-postgresql

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
