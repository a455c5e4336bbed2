# rlplat: the two commands of the README.
#   make run  [ARGS="grpo.total_steps=10 ..."]   train the embedded default (or any experiment)
#   make test [PYTEST_ARGS="-k sync"]            lint, type and import checks, then the test suite
# Both create .venv with everything needed when it is missing (scripts/setup.sh; idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRA ?= cpu
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup run check test bench monitor clean

$(VENV)/.rlplat-installed: pyproject.toml scripts/setup.sh scripts/setup-sandbox.sh
	EXTRA=$(EXTRA) bash scripts/setup.sh $(VENV)

setup: $(VENV)/.rlplat-installed

run: setup
	$(PY) -m rlplat.launch $(ARGS)

# Lint (ruff) of the packages, tests and benchmarks; types (mypy: the packages as pyproject.toml
# says, strict on the leaves, rewards, curricula, rlbase; then the tests and benchmarks); the import
# layers of docs/design.md (import-linter contracts in pyproject.toml).
# pytest imports a test folder's modules by their bare names, each folder with a conftest.py being
# a root of its own; mypy checks them the same way, one such folder per run (one run cannot hold
# two modules named "conftest"), the folders without one together with tests/conftest.py.
TEST_ROOTS := $(patsubst %/conftest.py,%,$(wildcard tests/*/conftest.py))
TEST_REST := $(filter-out $(TEST_ROOTS),$(sort $(patsubst %/,%,$(dir $(wildcard tests/*/*.py)))))
check: setup
	$(PY) -m ruff check rlplat rewards curricula rlbase tests bench
	$(PY) -m mypy
	$(PY) -m mypy tests/conftest.py $(TEST_REST) bench
	status=0; $(foreach root,$(TEST_ROOTS),$(PY) -m mypy $(root) || status=1;) exit $$status
	$(VENV)/bin/lint-imports

test: check
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) bench/run_all.py

# Prometheus on 127.0.0.1:9090 scraping the local Ray cluster (docs/monitoring.md).
monitor:
	bash scripts/monitor.sh

clean:
	rm -rf $(VENV) runs outputs .pytest_cache .mypy_cache .ruff_cache
