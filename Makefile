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
	$(BIN)/ruff check drip tests bench
	$(BIN)/ruff format --check drip tests bench
	$(BIN)/pytest -n auto --maxprocesses 4 --dist loadgroup

# Kill workers, the scheduler and Redis while 2,000 subscribers get a 10-day series.
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos

lint: $(STAMP)
	$(BIN)/ruff check drip tests bench
	$(BIN)/ruff format --check drip tests bench

format: $(STAMP)
	$(BIN)/ruff format drip tests bench
	$(BIN)/ruff check --fix drip tests bench

# `make bench` runs all five benchmarks (docs/performance.md); not part of `make test`.
# One of them, smaller: `make bench BENCH=send N=2000` (or `python -m bench.send --n 2000`).
N ?= 20000
BENCH ?=
bench: $(STAMP)
	command -v wrk >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	BENCH_N=$(N) $(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) instance .pytest_cache
