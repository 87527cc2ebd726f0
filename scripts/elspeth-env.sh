#!/usr/bin/env bash
# Developer-only: build a local ELSPETH checkout + venv for the tests marked `elspeth`.
# NOT for CI. ELSPETH's code stays outside this repository and must never be committed here.
#
# usage: scripts/elspeth-env.sh <git mirror path | clone URL>
# env:   ELSPETH_SRC  (default /work/elspeth-src)   work tree to create
#        ELSPETH_VENV (default /work/elspeth-venv)  venv to create
#        ELSPETH_REF  (default de732358)            commit to check out if present, else newest
#        PY312        (default: first working python3.12 / python3.13 / pyenv 3.12.1)
# Idempotent: re-running reuses the checkout and venv. ELSPETH is left unpatched.
set -euo pipefail

SRC_REPO=${1:?usage: $0 <elspeth git mirror path or clone URL>}
ELSPETH_SRC=${ELSPETH_SRC:-/work/elspeth-src}
ELSPETH_VENV=${ELSPETH_VENV:-/work/elspeth-venv}
ELSPETH_REF=${ELSPETH_REF:-de732358}
if [ -z "${PY312:-}" ]; then  # first interpreter that really runs (a pyenv shim may not)
  for c in python3.12 python3.13 /root/.pyenv/versions/3.12.1/bin/python3.12; do
    if "$c" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then PY312=$c; break; fi
  done
fi
: "${PY312:?no Python >= 3.12 found; set PY312}"
PROJECT=$(cd "$(dirname "$0")/.." && pwd)
say() { printf '+ %s\n' "$*"; }

if [ ! -d "$ELSPETH_SRC/.git" ]; then
  say "git clone $SRC_REPO $ELSPETH_SRC"
  git clone -q "$SRC_REPO" "$ELSPETH_SRC"
fi
if git -C "$ELSPETH_SRC" cat-file -e "$ELSPETH_REF^{commit}" 2>/dev/null; then
  TARGET=$ELSPETH_REF
else
  TARGET=$(git -C "$ELSPETH_SRC" rev-parse HEAD); echo "! $ELSPETH_REF not found; using newest ($TARGET)"
fi
if [ "$(git -C "$ELSPETH_SRC" rev-parse HEAD)" != "$(git -C "$ELSPETH_SRC" rev-parse "$TARGET")" ]; then
  say "git checkout $TARGET (local edits stashed)"
  git -C "$ELSPETH_SRC" stash -q || true
  git -C "$ELSPETH_SRC" checkout -q "$TARGET"
fi
say "ELSPETH at $(git -C "$ELSPETH_SRC" log --oneline -1)"

# No local patch: ELSPETH stays exactly as upstream ships it. The launcher
# (python -m elspeth_appendsink.elspeth) corrects 0.4.1's resume bug at run time.
CLI=$ELSPETH_SRC/src/elspeth/cli.py
if grep -q 'LOCAL FIX' "$CLI"; then
  say "undoing an earlier local patch of $CLI (the launcher corrects resume at run time)"
  git -C "$ELSPETH_SRC" checkout -q -- src/elspeth/cli.py
fi

if [ ! -x "$ELSPETH_VENV/bin/python" ]; then
  say "$PY312 -m venv $ELSPETH_VENV"
  "$PY312" -m venv "$ELSPETH_VENV"
fi
PIP="$ELSPETH_VENV/bin/python -m pip"
say "pip install -U pip (pip 23.x fails to resolve the azure extra: InconsistentCandidate)"
$PIP install -q -U pip
# Pin to ELSPETH's uv.lock so we test the versions ELSPETH tests.
CONSTRAINTS=$ELSPETH_VENV/elspeth-uvlock-constraints.txt
"$ELSPETH_VENV/bin/python" - "$ELSPETH_SRC/uv.lock" > "$CONSTRAINTS" <<'EOF'
import collections, sys, tomllib
seen = collections.defaultdict(set)
for p in tomllib.load(open(sys.argv[1], "rb"))["package"]:
    if p["name"] != "elspeth" and "version" in p:
        seen[p["name"]].add(p["version"])
print("\n".join(f"{n}=={v.pop()}" for n, v in sorted(seen.items()) if len(v) == 1))
EOF
# [web,rag] are needed too: plugin discovery imports every plugin module (html2text, chromadb).
say "pip install -e $ELSPETH_SRC[azure,web,rag] (constraints: $CONSTRAINTS)"
$PIP install -q -c "$CONSTRAINTS" -e "$ELSPETH_SRC[azure,web,rag]"
say "pip install -e $PROJECT[test]"
$PIP install -q -e "$PROJECT[test]"
"$ELSPETH_VENV/bin/python" -c 'import elspeth, elspeth_appendsink; from elspeth.plugins.infrastructure.manager import get_shared_plugin_manager as g; print("ok: elspeth", elspeth.__version__, "sinks:", sorted(c.name for c in g().get_sinks()))'
say "done. Use: $ELSPETH_VENV/bin/python -m pytest -m elspeth"
