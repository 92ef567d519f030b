# Gatekeeper: `make run` starts the service (with the simulator when no provider token is set),
# `make test` runs the whole suite against real PostgreSQL and Redis.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One stamp per set of pins: `make run` needs only the runtime, tests and lint the dev tools too.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
DEV_STAMP := $(VENV)/.installed-dev-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/gatekeeper
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: venv dev services test lint run migrate bench clean

venv: $(STAMP)

dev: $(DEV_STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-[0-9]* && touch $@

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-dev-* && touch $@

services:
	@bash scripts/services.sh

# ruff, the import layers and cycles (.importlinter), and mypy (settings in pyproject.toml; its
# django-stubs plugin loads the settings, which with DEBUG off refuse to load without the secrets).
lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	DEBUG=1 $(BIN)/mypy

# GATEKEEPER_DOTENV=0: the suite never reads a developer's .env (gatekeeper/env.py skips it under
# pytest anyway; this says so for every process the tests start).
test: dev services lint
	GATEKEEPER_DOTENV=0 DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(BIN)/python -m pytest $(PYTEST_ARGS)

# Reads and, on the first run, writes .env (see scripts/run.sh).
run: venv
	bash scripts/run.sh

bench: dev services
	$(BIN)/python bench/decision_quality.py
	$(BIN)/python bench/time_to_rollback.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/chaos.py
	$(BIN)/python bench/fuzz.py

migrate: venv
	$(BIN)/python manage.py migrate

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .ruff_cache .hypothesis run
