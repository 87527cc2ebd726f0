#!/usr/bin/env bash
# The fleet benchmark (benchmarks/fleet.py) with the ELSPETH venv (N concurrent ELSPETH processes,
# one PostgreSQL landscape, one Azurite container). ELSPETH_VENV defaults to /work/elspeth-venv
# (made by scripts/elspeth-env.sh); it needs psycopg[binary] beside ELSPETH.
# Extra arguments go to the benchmark, e.g. scripts/bench-fleet.sh --rows 400 --ns 1,2
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${ELSPETH_VENV:-/work/elspeth-venv}"
cd "$root"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$venv/bin/python" -m benchmarks.fleet "$@"
