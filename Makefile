# Every target runs its tools from the project's venv (.venv), created and filled on first use
# and refreshed whenever a requirements file changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=
# make run PROCS=3: three daphne processes on consecutive ports, three push workers.
PROCS ?= $(or $(WEB_PROCESSES),1)

.DEFAULT_GOAL := help
.PHONY: help run test lint format bench clean

help:
	@echo "make run     start the dev stack (embedded Redis, migrate, demo data, daphne, push worker)"
	@echo "make test    run the tests (PYTEST_ARGS='-k name' to narrow)"
	@echo "make lint    ruff check, ruff format --check, mypy"
	@echo "make format  fix what ruff can and reformat"
	@echo "make bench   run the benchmark (BENCH_ARGS='...')"
	@echo "make clean   remove .run/ and the SQLite database"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(STAMP)
	WEB_PROCESSES=$(PROCS) $(BIN)/python scripts/devserver.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# Fixes first: some (import sorting) leave lines the formatter then rewraps.
format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Needs no venv, so it does not create one.
clean:
	rm -rf .run db.sqlite3*
