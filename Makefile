# Two commands for a fresh machine with Python 3.11+ and make: `make dev` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test install bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/settlepay dev

# Layering and style are checked first: a broken contract fails CI like a failing test.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/deposits.py
	$(BIN)/python bench/settlement.py
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/lists.py
	$(BIN)/python bench/rate_limit.py
	$(BIN)/python bench/reconciliation.py

# A seeded chaos run of the whole stack (not part of `make test`): SEED replays a schedule.
SEED    ?= 1
MINUTES ?= 5
chaos: $(STAMP)
	$(BIN)/python -m chaos --seed $(SEED) --minutes $(MINUTES)

clean:
	rm -rf $(VENV) .pytest_cache
