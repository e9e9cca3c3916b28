# One command each: `make dev` runs the whole stack, `make test` the whole suite.
# Works on a fresh Debian 12 clone with python3 (3.11) and its venv module; no Docker.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when the project's dependencies change.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: dev test lint bench migrate install clean-venv

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

dev: install
	$(BIN)/helpdesk dev

migrate: install
	$(BIN)/helpdesk migrate

# System set-up scripts (apt packages, emulators) that other parts of the suite need:
# every scripts/install-*.sh present, in name order. Each one is idempotent.
# PYTEST_ARGS narrows a run, e.g. make test PYTEST_ARGS=tests/api/test_codec.py (coverage then
# falls short of fail_under, which only the whole suite meets).
# Lint first: a style or type error fails CI before the long run.
test: lint
	@set -e; for script in scripts/install-*.sh; do \
		[ -f "$$script" ] || continue; \
		echo "== $$script"; bash "$$script"; \
	done
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/import_cycles.py
	@if grep -rnE '^\s*(from|import) tests\.([a-z_]+\.)?test_' tests bench scripts; then \
		echo "a test module imports another test module: move the helper to a support module"; \
		exit 1; fi

bench: install
	$(BIN)/python -m bench.run

clean-venv:
	rm -rf $(VENV)
