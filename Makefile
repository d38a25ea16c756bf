# amworker: two commands on a fresh machine.
#   make run   - set up and run the worker (shim + Celery worker), embedded defaults;
#                on exit (Ctrl-C) it stops the private gearmand/Redis it started
#   make stop  - stop a private gearmand/Redis that make run left running
#   make test  - set up what the tests need and run them
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run stop test test-unit test-integration test-faults lint bench venv services clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

services: $(STAMP)
	@scripts/ensure-services

# Not exec'd: the shell stays to run the trap, which stops the private
# gearmand and Redis this run started (a configured one is never touched).
run: services
	@trap 'scripts/stop-services --started' EXIT; \
	export AMWORKER_DATA_DIRECTORY=$${AMWORKER_DATA_DIRECTORY:-$(CURDIR)/var}; \
	export AMWORKER_SHARED_DIRECTORY=$${AMWORKER_SHARED_DIRECTORY:-$(CURDIR)/var/shared/}; \
	export AMWORKER_CLIENT_ASSETS_DIRECTORY=$${AMWORKER_CLIENT_ASSETS_DIRECTORY:-$(CURDIR)/var/assets/}; \
	mkdir -p "$$AMWORKER_SHARED_DIRECTORY" "$$AMWORKER_CLIENT_ASSETS_DIRECTORY"; \
	$(BIN)/amworker init-db && \
	echo "" && \
	echo "amworker is starting. In another terminal, submit a smoke-test batch:" && \
	echo "  $(BIN)/amworker submit test_v0.0 --tasks 4 --wants-output -- -d /tmp" && \
	echo "Ctrl-C stops it, and the private gearmand/Redis it started (make stop cleans up leftovers)." && \
	echo "" && \
	$(BIN)/amworker run

stop:
	@scripts/stop-services

test: lint
	@scripts/ensure-test-tools
	$(BIN)/pytest -q -p no:cacheprovider

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP)
	@scripts/ensure-test-tools
	$(BIN)/pytest -q -p no:cacheprovider tests/integration

# The fault tests also run in `make test`, with 45 s soaks; here each soak
# runs the issue's 10 minutes (override with AMWORKER_SOAK_SECONDS).
test-faults: $(STAMP)
	@scripts/ensure-test-tools
	AMWORKER_SOAK_SECONDS=$${AMWORKER_SOAK_SECONDS:-600} $(BIN)/pytest -q -p no:cacheprovider tests/faults

lint: $(STAMP)
	$(BIN)/ruff check worker tests bench
	$(BIN)/mypy worker

# make bench SOAK=600 runs the soak instead: ten minutes of mixed load, the
# shim's RSS and Redis's memory over time (bench/results/soak.md and .png).
bench: $(STAMP)
	@scripts/ensure-test-tools
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench $(if $(SOAK),--soak $(SOAK))

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
