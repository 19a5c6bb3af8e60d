# The commands users type. Every target sets up .venv from the pinned requirements on first use
# (and again whenever requirements.txt changes), so a fresh clone needs nothing but Python 3.11.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
# dbt must never phone home (there is no network here, and users may not want it).
export DO_NOT_TRACK := 1
export PYTHONUNBUFFERED := 1
# .venv holds the exact pins: a PYTHONPATH set for another project would put its packages before them (its numpy,
# pydantic or psycopg imported in place of ours, or a traceback where the two do not fit).
unexport PYTHONPATH
# Children reach the warehouse the same way Python does: embedded by default, else .env / PG* / DATABASE_URL,
# with the per-component logins (dbt: WAREHOUSE_TRANSFORMER_USER). If that fails, its one-line error stops the target.
WAREHOUSE_ENV = exports="$$($(BIN)/python -m warehouse_db env)" && eval "$$exports"

SOURCE ?= ibkr
FILES ?=
ARGS ?=

.PHONY: help setup demo test test-fast lint format ingest dbt-build train walk-forward sweep db-up db-down db-status psql docs calendar bench bench-dbt-large simulator clean

help:
	@echo "make demo     - whole pipeline on the embedded warehouse and the gateway simulator; ARGS go to its walk-forward"
	@echo "make test     - the test suite"
	@echo "make ingest   - fetch bars from IB Gateway/TWS (.env); SOURCE=csv FILES='a.csv b.csv' for files; ARGS='--dry-run'"
	@echo "make dbt-build - dbt build (same as 'dbt run && dbt test' plus seeds) against the configured warehouse"
	@echo "make train    - one quick run: PPO on the latest walk-forward fold, one seed; ARGS='--timesteps 20000 --fold 2'"
	@echo "make walk-forward - every fold x 5 seeds on Ray, statistics and verdict; ARGS='--seeds 3 --ray-address HEAD:6380'"
	@echo "make sweep    - hyperparameter search (Optuna TPE + ASHA on Ray Tune) on validation folds, then the best one walked forward; ARGS='--trials 40 --resume <sweep_id>'"
	@echo "make setup | test-fast | lint | format | db-up | db-down | db-status | psql | docs | calendar | bench | bench-dbt-large | simulator"
	@echo "make clean    - delete target/, logs/, runs/ (every run folder and report), .pytest_cache and bench/results"

# A venv's programs name the path it was created at (dbt's and pip's #! lines, the editable install): after the
# repository moves, they fail ("bad interpreter", "dbt: command not found"). The stamp holds where it was set up
# (one from before it did: pyvenv.cfg's venv command), and a .venv set up elsewhere is created again here.
SET_UP_AT = $$({ cat $(STAMP); sed -n 's|^command = .* -m venv \(.*\)/$(VENV)$$|\1|p' $(VENV)/pyvenv.cfg; } 2>/dev/null | head -n 1)
MOVED = test -e $(STAMP) && at="$(SET_UP_AT)" && test -n "$$at" && test "$$at" != "$$(pwd -P)"
VENV_MOVED := $(shell $(MOVED) && echo yes)
ifeq ($(VENV_MOVED),yes)
.PHONY: $(STAMP)
endif

# The project itself is installed in editable mode, so tests, benchmarks and tools import it without sys.path edits.
$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "Python 3.11 is required (found $$($(PYTHON) --version)); run: make PYTHON=/path/to/python3.11 ..."; exit 1; }
	@if $(MOVED); then \
		echo ".venv was set up in $$at, and the repository has moved since: creating it again here"; rm -rf $(VENV); fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	pwd -P > $(STAMP)

setup: $(STAMP)

# ARGS go to the walk-forward step, e.g. ARGS='--seeds 1 --timesteps 10000' for a quicker look.
demo: $(STAMP)
	bash scripts/demo.sh $(ARGS)

# Two workers, a test module each at a time (module fixtures build once; the modules that start Ray share one worker:
# tests/conftest.py). Most tests wait on PostgreSQL, dbt or Ray, so two workers cut the wall time even on 2 cores.
# ARGS='-n 0' runs them in this process.
test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(ARGS)

# Unit tests only: no PostgreSQL, dbt, Ray, simulator socket or training run (tests/conftest.py enforces it).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not slow" $(ARGS)

# ruff's rule set and formatter settings live in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ingest: $(STAMP)
ifeq ($(SOURCE),csv)
	$(BIN)/python -m ingest --source csv $(FILES) $(ARGS)
else
	$(BIN)/python -m ingest --source $(SOURCE) $(ARGS)
endif

dbt-build: $(STAMP) db-up
	$(WAREHOUSE_ENV) && $(BIN)/dbt build $(ARGS)

train: $(STAMP)
	$(BIN)/python -m training $(ARGS)

# A local Ray by default; ARGS='--ray-address HOST:PORT' (or RAY_ADDRESS) runs the same tasks on a cluster.
walk-forward: $(STAMP)
	$(BIN)/python -m training.walk_forward $(ARGS)

# Trials scored on validation folds only; the search space is training/configs/sweep_space.yaml (ARGS='--space FILE').
sweep: $(STAMP)
	$(BIN)/python -m training.sweep $(ARGS)

# Up means ready for `dbt run && dbt test` as typed: provisioned, with the seeds loaded (NYSE calendar, known
# missing sessions, verified price moves). The seeds' run results go to target/seed/: target/run_results.json stays the last build's. (Training
# takes the build of the mart it read from marts.mart_builds, not from that file.)
db-up: $(STAMP)
	$(BIN)/python -m warehouse_db up
	$(WAREHOUSE_ENV) && $(BIN)/dbt seed --quiet --target-path target/seed

db-down: $(STAMP)
	$(BIN)/python -m warehouse_db down

db-status: $(STAMP)
	$(BIN)/python -m warehouse_db status

# ARGS go to psql unchanged (make psql ARGS="-c 'select 1'"); ROLE=analyst connects with the analyst's login.
ROLE ?=
psql: $(STAMP)
	$(BIN)/python -m warehouse_db psql $(if $(ROLE),--as $(ROLE)) $(ARGS)

docs: $(STAMP) db-up
	$(WAREHOUSE_ENV) && $(BIN)/dbt docs generate && $(BIN)/dbt docs serve --port 8080 --host 127.0.0.1

calendar: $(STAMP)
	$(BIN)/python -m devtools.generate_calendar

simulator: $(STAMP)
	$(BIN)/python -m gateway_simulator --port 4002 $(ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench_landing.py
	$(BIN)/python bench/bench_csv.py
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_dbt.py --small-only
	$(BIN)/python bench/bench_fixed_costs.py
	$(BIN)/python bench/bench_training.py
	$(BIN)/python bench/bench_walk_forward.py
	$(BIN)/python bench/bench_sweep.py

# 5,000 symbols x 10 years (12.6 M bars): about 20 minutes and 15 GB of disk (docs/benchmarks.md).
bench-dbt-large: $(STAMP)
	$(BIN)/python bench/bench_dbt.py

clean:
	rm -rf target logs runs .pytest_cache bench/results
