# claims: make demo, make test. `make help` lists every target.
PY ?= python3
VENV := .venv
TOOLS := .tools
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

# uv from PATH if there is one, else a private copy bootstrapped with pip into $(TOOLS).
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(TOOLS)/bin/uv
endif

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-slow test-all lint bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(TOOLS)/bin/uv:
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv

# --compile-bytecode: every module compiled once here, as an installed program has it; without
# it (and with PYTHONDONTWRITEBYTECODE) each `claims` start compiles its imports again.
$(VENV)/.synced: pyproject.toml uv.lock Makefile | $(UV)
	$(UV) sync --frozen --extra dask --compile-bytecode --python $(PY)
	@touch $@

setup: $(VENV)/.synced ## create .venv with the locked dependencies

demo: setup ## build a synthetic landing folder under data/demo, run it, show what happened
	$(VENV)/bin/claims demo

# One worker per core (pytest-xdist), a test file's tests kept on one worker so that its
# module-scoped warehouses are built once; each worker has its own Prefect home and harness.
test: setup ## the test suite on every core (slow tests excluded; see test-slow)
	$(VENV)/bin/pytest -q -n auto --dist loadfile

test-slow: setup ## the slow tests: real Prefect server, faults, scale
	$(VENV)/bin/pytest -q -m slow

test-all: test test-slow ## everything CI runs

lint: setup ## ruff, mypy and the package layers (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup ## every target of issue 16 at full scale, one run (~17 min with data cached; writes docs/benchmarks.md); BENCH_ARGS="--out DIR" reuses data cached there
	$(VENV)/bin/python -m benchmarks.run --scale full $(BENCH_ARGS)

clean: ## remove the environment and generated data
	rm -rf $(VENV) $(TOOLS) data/demo data/landing data/outbox data/warehouse.duckdb*
