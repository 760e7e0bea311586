# The two commands a newcomer needs:
#   make run    install everything and start Fetlock with a demo practice
#   make test   install everything and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The data directory: FETLOCK_DATA_DIR from the environment, else ./var.
DATA_DIR ?= $(or $(FETLOCK_DATA_DIR),var)

.PHONY: run test install system-deps lint test-sqlite test-postgresql clean viewer

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) viewer

# The browser viewer (TypeScript in frontend/) is built by Vite into the
# package's static folder; without Node.js Fetlock runs, minus the viewer.
FRONTEND := frontend
VIEWER_BUILT := src/fetlock/web/static/viewer/.vite/manifest.json
VIEWER_SOURCES := $(FRONTEND)/package.json $(FRONTEND)/package-lock.json \
	$(wildcard $(FRONTEND)/*.ts $(FRONTEND)/tsconfig*.json $(FRONTEND)/src/*)

$(FRONTEND)/node_modules/.package-lock.json: $(FRONTEND)/package-lock.json
	cd $(FRONTEND) && npm ci --no-audit --no-fund

$(VIEWER_BUILT): $(FRONTEND)/node_modules/.package-lock.json $(VIEWER_SOURCES)
	cd $(FRONTEND) && npm run build

viewer:
	@if command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(VIEWER_BUILT); \
	else \
		echo "npm not found: the image viewer is not built (install Node.js 20+ and npm)"; \
	fi

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

# The browser tests need the viewer; build it again here, since Node.js may
# have come with system-deps after install ran.
test-sqlite: install
	@$(MAKE) --no-print-directory viewer
	FETLOCK_TEST_DATABASE=sqlite $(BIN)/pytest

test-postgresql: install system-deps
	@$(MAKE) --no-print-directory viewer
	FETLOCK_TEST_DATABASE=postgresql $(BIN)/pytest

test: system-deps install lint test-sqlite test-postgresql

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
