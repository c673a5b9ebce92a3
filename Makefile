# Two commands on a fresh machine:   make demo   ·   make test
# Everything else (the virtualenv, PostgreSQL's server binaries) is bootstrapped here.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The editable install is "strict": it links each module, so adding a module needs a
# reinstall (so does adding a migration: package data is linked too). The stamp records
# the module list and pyproject; any change reinstalls.
STAMP  := $(VENV)/.installed
MODULES := $(shell find . \( -name '*.py' -o -name '*.sql' \) -not -path './.venv/*' -not -path './build/*' \
             -not -path './tests/*' -not -path './property_tests/*' -not -path './bench/*' \
             -not -path './docs/*' | LC_ALL=C sort | tr '\n' ' ')

.PHONY: install reinstall demo test check lint typecheck layers guards pytest postgres-binaries bench bench-quick soak feed-soak clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	@echo "$(MODULES)" > $(STAMP)

# Reinstall when the set of modules changed since the last install.
reinstall:
	@if [ ! -f $(STAMP) ] || [ "$$(cat $(STAMP))" != "$(MODULES)" ]; then \
	  rm -f $(STAMP); $(MAKE) --no-print-directory $(STAMP); fi

demo: reinstall
	$(BIN)/reactive-entities demo

# PostgreSQL's server binaries; the test run starts its own throwaway server.
postgres-binaries:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { echo "installing PostgreSQL server binaries"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

lint: reinstall
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: reinstall
	$(BIN)/mypy -p reactive_entities
	$(BIN)/mypy tests
	$(BIN)/mypy property_tests
	$(BIN)/mypy bench

layers: reinstall
	$(BIN)/lint-imports

guards: reinstall
	$(BIN)/python .ci/wheel_guard.py

check: lint typecheck layers guards

pytest: reinstall postgres-binaries
	$(BIN)/python -P -m pytest $(PYTEST_ARGS)

test: check pytest

bench: reinstall postgres-binaries
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-quick: reinstall postgres-binaries
	$(BIN)/python bench/run.py --quick $(BENCH_ARGS)

# The kill -9 soak of transactional writes (issue 10) at full size: 60 kills.
soak: reinstall postgres-binaries
	RE_SOAK_KILLS=60 $(BIN)/python -P -m pytest -q -p no:cacheprovider tests/test_transactions_kill.py

# The cross-process change feed (issue 11) at full size: 3 processes, 8 writer threads,
# 20,000 changes over 200 entities.
feed-soak: reinstall postgres-binaries
	RE_FEED_SOAK=1 $(BIN)/python -P -m pytest -q -p no:cacheprovider tests/test_feed_processes.py

clean:
	rm -rf $(VENV) $(VENV)-pure build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name '*.so' -not -path './.venv*' -delete
