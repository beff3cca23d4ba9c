# blocktrust-exporter: `make demo` and `make test` each do all of their own set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DURATION ?=
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test fast setup venv tools system-deps postgres lint typecheck pytest contracts contracts-check rules clean

demo: venv tools ## run the exporter on embedded defaults (SQLite, simulator, local anvil)
	$(BIN)/blocktrust-exporter demo $(if $(DURATION),--duration $(DURATION)s) $(DEMO_ARGS)

test: setup lint typecheck contracts-check pytest ## set up everything, then lint, type-check and run the whole suite

setup: venv tools system-deps postgres

venv: $(BIN)/.installed
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

tools: tools/node_modules/.installed
tools/node_modules/.installed: tools/package.json tools/package-lock.json tools/.npmrc
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	tools/node_modules/.bin/anvil --version >/dev/null
	touch $@

system-deps:
	scripts/ensure-system-deps.sh

postgres:
	scripts/ensure-postgres.sh

lint: venv
	$(BIN)/ruff check exporter tests bench
	$(BIN)/ruff format --check exporter tests bench

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

fast: venv ## the fast loop: pure tests only (no PostgreSQL, no anvil, nothing slow)
	$(BIN)/python -m pytest -q -m "not postgres and not anvil and not slow" $(PYTEST_ARGS)

contracts: tools ## recompile contracts/*.sol into exporter/demo/contracts/build/
	node scripts/compile_contracts.mjs

contracts-check: tools ## fail if the committed ABI/bytecode are stale
	node scripts/compile_contracts.mjs --check

rules: venv ## regenerate the SLO recording and alerting rules from config.yaml
	$(BIN)/blocktrust-exporter rules --config config.yaml > prometheus/rules/slo.yml

clean:
	rm -rf $(VENV) tools/node_modules .mypy_cache .ruff_cache .pytest_cache
