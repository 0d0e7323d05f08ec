# Two commands set up a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The hierarchy's preset while the Director extension is in place, flat walker-walk after a rollback.
TASK ?= $(if $(wildcard tdmpc2/configs/task/director_walker_walk.yaml),director_walker_walk,walker-walk)
ARGS ?=
PYTEST_ARGS ?=
# Test files run on two worker processes (one per core here), each with its share of threads.
PYTEST_WORKERS ?= 2

.PHONY: install train test lint format

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

train: install
	$(PY) tdmpc2/train.py task=$(TASK) $(ARGS)

test: install lint
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
