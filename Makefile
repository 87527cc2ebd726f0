# Two commands for people: `make demo` and `make test`. Both set everything up themselves
# (venv, pip install, npm ci) and are safe to re-run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup demo test test-quick lint azurite bench bench-quick bench-elspeth soak clean

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is required (Node 20+): it installs Azurite, the storage emulator"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

demo: setup
	$(PY) -m elspeth_appendsink.tools.demo

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider

# a local Azure Storage emulator for your own pipeline: prints the connection string; Ctrl-C stops it
azurite: setup
	$(PY) -m elspeth_appendsink dev-storage --container $(or $(CONTAINER),pipeline-output)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: setup
	$(PY) -m benchmarks

bench-quick: setup
	$(PY) -m benchmarks --quick

# the same real ELSPETH pipeline with csv, azure_blob and azure_append_blob (needs ELSPETH's venv)
bench-elspeth: setup
	scripts/bench-elspeth.sh

soak: setup
	SOAK_SECONDS=600 $(PY) -m pytest -q tests/soak -m slow -p no:cacheprovider

clean:
	rm -rf $(VENV) node_modules
