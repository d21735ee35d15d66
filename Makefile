# Every install step lives here: `make run` and `make test` work on a fresh clone.
# A Python whose email package has the CVE-2024-6923 fix (standards SEC-07), with venv:
# python3 if it has it, else the newest python3.X on PATH or in pyenv that does.
# PYTHON=/path/to/python3 chooses another. Worked out once, when nothing names one.
HAS_FIX := import email.policy, ensurepip, sys, venv; \
	sys.exit(not hasattr(email.policy.default, "verify_generated_headers"))
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in python3 python3.14 python3.13 python3.12 python3.11 \
	$$(ls -d "$$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$$HOME/.pyenv}")"/versions/3.1[1-9].*[0-9]/bin/python3 \
	2>/dev/null | sort -rV 2>/dev/null); do $$p -c '$(HAS_FIX)' 2>/dev/null && { echo $$p; break; }; done)
endif
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench chaos clean

$(STAMP): pyproject.toml
	@$(or $(PYTHON),false) -c '$(HAS_FIX)' 2>/dev/null || { echo "drip needs a Python with the" \
		"CVE-2024-6923 fix (3.11.10+, 3.12.5+, 3.13+) and venv; '$(PYTHON)' is not one:" \
		"install one, or name it with PYTHON=/path/to/python3" >&2; exit 1; }
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# `make run PORT=8001 HOST=0.0.0.0` serves elsewhere; the defaults are drip run's. Set
# with = rather than ?=, so that only the command line changes them: a shell may export
# HOST or PORT for something else.
HOST = 127.0.0.1
PORT = 5000
run: $(STAMP)
	$(BIN)/drip run --host $(HOST) --port $(PORT)

# One pytest worker more than there are cores (at most 5): the tests wait on threads,
# subprocesses and PostgreSQL often enough that a core would otherwise sit idle.
# getconf works on Linux and macOS; nproc is GNU only.
WORKERS := $(shell n=$$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null || echo 1); \
	[ $$n -gt 4 ] && n=4; echo $$((n + 1)))

test: $(STAMP)
	$(BIN)/ruff check drip tests bench
	$(BIN)/ruff format --check drip tests bench
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup

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
