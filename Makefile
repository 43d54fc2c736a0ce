# rempart developer commands. `make help` lists them; CI runs `make test` through .ci/run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help demo test check lint typecheck migrations-check pytest bench clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]" -c constraints.txt
	@touch $(STAMP)

demo: $(STAMP)  ## seed a 2,000-patient synthetic hospital (once) and serve it on 127.0.0.1:8000
	$(BIN)/rempart demo

test: check pytest  ## everything CI checks: lint, types, migrations, the test suite

check: lint typecheck migrations-check  ## static checks only

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/rempart

migrations-check: $(STAMP)  ## alembic upgrade head + alembic check, on SQLite and PostgreSQL
	$(BIN)/python scripts/migrations_check.py

pytest: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadgroup

bench: $(STAMP)  ## run the benchmarks (minutes); results go to docs/benchmarks.md by hand
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache rempart-data
