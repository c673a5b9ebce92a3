# Two commands on a fresh machine:   make demo   ·   make test
# Everything else (the virtualenv, PostgreSQL's server binaries) is bootstrapped here.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The editable install is "strict": it links each module, so adding a module needs a
# reinstall (so does adding a migration: package data is linked too). The stamp records
# the module list and pyproject; any change reinstalls.
STAMP  := $(VENV)/.installed
# The same package built as pure Python (REACTIVE_ENTITIES_PURE=1), to test both builds.
PURE_VENV  := .venv-pure
PURE_STAMP := $(PURE_VENV)/.installed
MODULES := $(shell find . \( -name '*.py' -o -name '*.sql' \) -not -path './.venv/*' -not -path './build/*' \
             -not -path './tests/*' -not -path './property_tests/*' -not -path './bench/*' \
             -not -path './docs/*' -not -path './.venv-pure/*' | LC_ALL=C sort | tr '\n' ' ')
# The modules mypyc compiles (native.HOT_PATH): the compiled build is rebuilt when one
# of them changes, since the editable install runs their compiled copy.
HOT_PATH := $(shell $(PYTHON) -c "import ast; t = ast.parse(open('native.py').read()); \
  print(' '.join(m.removeprefix('reactive_entities.').replace('.', '/') + '.py' for n in t.body \
  if isinstance(n, ast.Assign) and getattr(n.targets[0], 'id', '') == 'HOT_PATH' \
  for m in ast.literal_eval(n.value)))")

.PHONY: install reinstall demo test check lint typecheck layers guards pytest pytest-pure install-pure postgres-binaries bench bench-quick bench-floor soak feed-soak clean

install: $(STAMP)

# Compiles the hot path with mypyc where a C compiler and Python's headers exist, else
# installs pure Python (setup.py); `reactive-entities --version` says which.
$(STAMP): pyproject.toml setup.py native.py $(HOT_PATH)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	@echo "$(MODULES)" > $(STAMP)

# Reinstall when the set of modules changed since the last install, or (compiled build)
# a compiled module's source did.
reinstall:
	@if [ ! -f $(STAMP) ] || [ "$$(cat $(STAMP))" != "$(MODULES)" ]; then rm -f $(STAMP); fi
	@$(MAKE) --no-print-directory $(STAMP)

install-pure: $(PURE_STAMP)

$(PURE_STAMP): pyproject.toml setup.py
	@test -x $(PURE_VENV)/bin/python || $(PYTHON) -m venv $(PURE_VENV)
	$(PURE_VENV)/bin/python -m pip install --quiet --upgrade pip
	REACTIVE_ENTITIES_PURE=1 $(PURE_VENV)/bin/python -m pip install --quiet -e '.[dev]' \
	  --config-settings editable_mode=strict
	@echo "$(MODULES)" > $(PURE_STAMP)

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

# The whole suite on the installed build (compiled where it could be).
pytest: reinstall postgres-binaries
	@$(BIN)/reactive-entities --version
	$(BIN)/python -P -m pytest $(PYTEST_ARGS)

# The whole suite again on the pure-Python build, with fewer examples per property and
# without the long soaks both builds share (PURE_PYTEST_ARGS to change).
PURE_PYTEST_ARGS ?= -q
pytest-pure: postgres-binaries
	@if [ ! -f $(PURE_STAMP) ] || [ "$$(cat $(PURE_STAMP))" != "$(MODULES)" ]; then rm -f $(PURE_STAMP); fi
	@$(MAKE) --no-print-directory $(PURE_STAMP)
	@$(PURE_VENV)/bin/reactive-entities --version
	RE_EXPECT_BUILD=pure HYPOTHESIS_PROFILE=quick $(PURE_VENV)/bin/python -P -m pytest $(PURE_PYTEST_ARGS)

test: check pytest pytest-pure

bench: reinstall postgres-binaries
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# How fast in-memory (a) can be at all: a hand-written floor, as Python and compiled.
bench-floor: reinstall
	$(BIN)/python -P bench/floor_bench.py

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
