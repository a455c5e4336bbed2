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

$(VENV)/.rlplat-installed: pyproject.toml scripts/setup.sh
	EXTRA=$(EXTRA) bash scripts/setup.sh $(VENV)

setup: $(VENV)/.rlplat-installed

run: setup
	$(PY) -m rlplat.launch $(ARGS)

# Lint (ruff), types (mypy: strict on the leaves, rewards, curricula, rlbase) and the import
# layers of README "Architecture" (import-linter contracts in pyproject.toml).
check: setup
	$(PY) -m ruff check rlplat rewards curricula rlbase
	$(PY) -m mypy
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
