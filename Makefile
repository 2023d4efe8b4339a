# The two commands of the README:
#   make serve   set up and run the server on the embedded default (SQLite)
#   make test    set up and run the whole test suite
# Both install exactly what requirements.lock pins (every dependency, with hashes);
# `make lock` refreshes it from pyproject.toml, `make upgrade` moves every pin forward.
PYTHON ?= python3
UV_VERSION := 0.13.9
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
STAMP  := $(VENV)/.installed

.PHONY: serve test setup lock upgrade lint typecheck bench clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)

$(STAMP): requirements.lock pyproject.toml | $(UV)
	$(UV) pip install --quiet --python $(BIN)/python --require-hashes -r requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# `make lock` keeps every pin the lock already has and settles only what pyproject.toml
# changed; `make upgrade` moves every pin to the newest release that fits.
LOCK_COMPILE := $(UV) pip compile pyproject.toml --all-extras --generate-hashes --universal \
	  --python-version 3.11 --quiet -o requirements.lock

lock: | $(UV)
	$(LOCK_COMPILE) --custom-compile-command "make lock"

upgrade: | $(UV)
	$(LOCK_COMPILE) --upgrade --custom-compile-command "make lock"

serve: $(STAMP)
	$(BIN)/watchword serve

# pytest runs one worker per core (pytest-xdist), a test file to a worker: on a slow 2-core
# host the suite took 24 minutes in one process. Each test file gets its own PostgreSQL database
# (a module fixture), and the tests already pick their own Redis prefixes and ports. The
# contract suite runs in one process of its own: under xdist, schemathesis ran 20 of its
# ~3,000 generated cases (its own size check failed the run).
test: $(STAMP)
	./scripts/test-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q -rs -p no:cacheprovider -n auto --dist loadfile --ignore=tests/contract
	$(BIN)/pytest -q -rs -p no:cacheprovider tests/contract

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	./scripts/test-deps
	mkdir -p bench/results
	$(BIN)/python -m bench --json bench/results/latest.json

clean:
	rm -rf $(VENV) build *.egg-info
