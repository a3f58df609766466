# Two entry points, both safe on a fresh clone: `make demo` and `make test`.
# Each creates .venv when missing and (re)installs the project when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch installs from local disk in seconds; a CUDA build is several GB.
# Override for a GPU machine, e.g. `make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" test`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.adacomp-installed

.PHONY: install demo test check lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# The main job: one search over one supernet on the embedded defaults (local Ray, sqlite MLflow
# store in runs/, two emulated devices + this CPU). Run again, it resumes: a finished search just
# prints its front.
demo: $(STAMP)
	$(BIN)/adacomp search examples/digits_supernet.yaml --resume

lint: $(STAMP)
	$(BIN)/ruff check adacomp tests benchmarks
	$(BIN)/ruff format --check adacomp tests benchmarks
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

# Two pytest-xdist workers: the suite waits on subprocesses, servers and Ray a third of the time,
# so two keep both cores busy (tests/conftest.py hands out whole modules, slow ones first).
# `make test PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(PYTEST_WORKERS)

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_PARALLEL)

test: lint typecheck pytest

# The inner loop: the same lint and type checks, and every test not marked slow (minutes, not ten).
check: lint typecheck
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not slow" -q

bench: $(STAMP)
	$(BIN)/python benchmarks/compress_table.py
	$(BIN)/python benchmarks/farm_bench.py
	$(BIN)/python benchmarks/search_bench.py
	$(BIN)/python benchmarks/supernet_bench.py

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
