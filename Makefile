# The two commands: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
LINTED := src tests $(wildcard bench)

.PHONY: demo test install lint typecheck contracts unit integration e2e browser chaos browser-deps bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "runkernel needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/runkernel demo

lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

contracts: install
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

# Debian's chromium for the browser tests; nothing downloads a browser of its own.
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: run 'sudo apt-get install -y chromium' (browser tests will skip)"; fi; \
	fi

unit: install
	$(BIN)/pytest tests/unit -q

integration: install
	$(BIN)/pytest tests/integration tests/contract -q

e2e: install
	$(BIN)/pytest tests/e2e tests/chaos -q

browser: install browser-deps
	$(BIN)/pytest tests/browser -q

test: install browser-deps lint contracts typecheck
	$(BIN)/pytest tests -q

bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/compare.py --db sqlite --runs 2000
	$(BIN)/python bench/compare.py --db postgres --runs 2000

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache runkernel.db*
