#!/usr/bin/env bash
# The in-ELSPETH benchmark (benchmarks/elspeth_pipeline.py) with the ELSPETH venv.
# ELSPETH_VENV defaults to /work/elspeth-venv (made by scripts/elspeth-env.sh). Without it, the
# project's own venv runs the module, which prints why it skipped and exits 0.
# Extra arguments go to the benchmark, e.g. scripts/bench-elspeth.sh --rows 200 --reps 1
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${ELSPETH_VENV:-/work/elspeth-venv}"
py="$venv/bin/python"
if [[ ! -x "$py" ]]; then
    py="$root/.venv/bin/python"
fi
cd "$root"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m benchmarks.elspeth_pipeline "$@"
