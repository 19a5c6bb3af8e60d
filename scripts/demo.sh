#!/usr/bin/env bash
# `make demo`: the whole pipeline on the embedded warehouse and the gateway simulator.
#   warehouse up -> simulator in the background -> ingest the watchlist -> dbt build -> short walk-forward.
# The simulator is stopped on every exit path, failures included. Safe to run again: the second ingest
# requests nothing, dbt builds incrementally, the walk-forward writes a new run.
# Arguments go to the walk-forward (python -m training.walk_forward --help), e.g. --seeds 1 --timesteps 10000.
# RUNS_DIR (default runs), DBT_TARGET_PATH (target) and DBT_LOG_PATH (logs) say where the run folders and dbt's
# artifacts go.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export DO_NOT_TRACK=1 PYTHONUNBUFFERED=1
RUNS_DIR=${RUNS_DIR:-runs}
export DBT_TARGET_PATH=${DBT_TARGET_PATH:-target} DBT_LOG_PATH=${DBT_LOG_PATH:-logs}

step() { printf '\n==> %s\n' "$*"; }

step "warehouse"
$BIN/python -m warehouse_db up

step "gateway simulator (TWS protocol on 127.0.0.1)"
sim_log=$(mktemp)
$BIN/python -m gateway_simulator --port 0 --seed 7 >"$sim_log" 2>&1 &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; rm -f "$sim_log"' EXIT
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$sim_log" | head -n 1)
  [ -n "$port" ] && break
  kill -0 "$sim_pid" 2>/dev/null || { cat "$sim_log"; echo "the simulator did not start" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { cat "$sim_log"; echo "the simulator did not report its port" >&2; exit 1; }
echo "simulator listening on 127.0.0.1:$port"

step "ingest: the watchlist, 5 years of daily bars (one request per symbol), only what is missing"
IBKR_HOST=127.0.0.1 IBKR_PORT=$port IBKR_CLIENT_ID=1 $BIN/python -m ingest --source ibkr

step "dbt build: staging -> intermediate -> marts, with every data test"
# Two steps, so that a failure of `warehouse_db env` stops the demo at once, with its own line and status (set -e).
# dbt's settings stay in a subshell, as make dbt-build's do: the walk-forward finds the warehouse itself, and names
# the embedded one as such (with PGHOST exported it took it for an external server).
exports="$($BIN/python -m warehouse_db env)"
(
  eval "$exports"
  $BIN/dbt build --quiet
)

step "walk-forward: every fold x seed on a local Ray (settings: training/configs/demo.yaml, then the demo's arguments); each model is selected on validation, then tested once against the baselines"
$BIN/python -m training.walk_forward --config training/configs/demo.yaml --runs-dir "$RUNS_DIR" "$@"
