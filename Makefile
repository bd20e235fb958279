# Pannier — every target bootstraps what it needs on a fresh machine with Python 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Every workspace distribution: the kernel and each plugin folder that has a pyproject.toml.
DISTS  := core $(patsubst %/pyproject.toml,%,$(wildcard connectors/*/pyproject.toml datatypes/*/pyproject.toml backends/*/pyproject.toml plugins/*/pyproject.toml))
CONFIG ?= examples/pannier.toml

.PHONY: setup run test lint bench reliability fuzz clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(DISTS:%=%/pyproject.toml)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Pannier needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(foreach d,$(DISTS),-e ./$(d)) -e '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/pannier run --config $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The standard scenario set (SQLite, MariaDB, PostgreSQL; PRODUCTION, DEVELOPMENT, DISABLED;
# the bare echo ceiling; idle RSS), appended to bench/RESULTS.md; the scenarios of a database
# server it cannot reach are skipped and named (--mysql-url, --postgres-url point elsewhere).
# BENCH_ARGS adds options; the engine is pinned to a CPU (docs/operations.md, CPU affinity)
# unless BENCH_ARGS says else. The set runs BENCH_REPEAT rounds and reports each scenario's
# median and range: one run is one sample of a machine whose speed drifts (3 rounds: about
# 5 minutes here).
BENCH_ARGS ?= --cpu-affinity auto
BENCH_REPEAT ?= 3
bench: $(STAMP)
	$(BIN)/pannier bench --standard --repeat $(BENCH_REPEAT) --results bench/RESULTS.md $(BENCH_ARGS)

# The reliability suite at full size: engine SIGKILL, database restarts (private servers),
# downstream down 30 s, 10,000 malformed inputs, a worker of a --workers node SIGKILLed.
# `make test` runs a shortened form.
reliability: $(STAMP)
	PANNIER_RELIABILITY_FULL=1 $(BIN)/python -m pytest -s \
		tests/reliability tests/store/test_crash_recovery.py \
		tests/test_workers.py::test_a_killed_worker_is_restarted_and_recovers_what_it_accepted \
		$(PYTEST_ARGS)

# Schemathesis against the API's own OpenAPI document on a fresh engine; fails on any 5xx.
FUZZ_EXAMPLES ?= 30
fuzz: $(STAMP)
	$(BIN)/python -m tests.api.fuzz $(FUZZ_EXAMPLES)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
