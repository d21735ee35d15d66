# Every install step lives here: `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/drip run

test: $(STAMP)
	$(BIN)/ruff check drip tests
	$(BIN)/ruff format --check drip tests
	$(BIN)/pytest

# Kill workers, the scheduler and Redis while 2,000 subscribers get a 10-day series.
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos

lint: $(STAMP)
	$(BIN)/ruff check drip tests
	$(BIN)/ruff format --check drip tests

format: $(STAMP)
	$(BIN)/ruff format drip tests
	$(BIN)/ruff check --fix drip tests

clean:
	rm -rf $(VENV) instance .pytest_cache
