# Gatekeeper: `make run` starts the service (with the simulator when no provider token is set),
# `make test` runs the whole suite against real PostgreSQL and Redis.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/gatekeeper
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: venv services test lint run migrate bench clean

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

services:
	@bash scripts/services.sh

lint: venv
	$(BIN)/ruff check .

test: venv services lint
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(BIN)/python -m pytest $(PYTEST_ARGS)

run: venv
	bash scripts/run.sh

bench: venv services
	$(BIN)/python bench/time_to_rollback.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/chaos.py
	$(BIN)/python bench/fuzz.py

migrate: venv
	$(BIN)/python manage.py migrate

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .ruff_cache .hypothesis run
