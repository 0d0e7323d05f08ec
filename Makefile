# Two commands set up a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# No TASK: tdmpc2/first_run.py picks the first run by the device (director_walker_walk, or flat
# walker-walk after a rollback; without a GPU at a one-hour CPU setting). ARGS win over its choice.
TASK ?=
ARGS ?=
PYTEST_ARGS ?=
# Test files run on two worker processes (one per core here), each with its share of threads.
PYTEST_WORKERS ?= 2

# The numerically sensitive tests, run again under the other numerics this CPU can emulate:
# ATen's kernels for another instruction set, and ATen's layers instead of the native kernel
# (built with -march=native and fast-math). Other machines round differently by default.
NUMERIC_TESTS ?= tests/test_core.py tests/test_fast_paths.py tests/test_goal_vae.py \
	tests/test_goal_worker.py tests/test_manager.py tests/test_director.py
NUMERICS ?= ATEN_CPU_CAPABILITY=default ATEN_CPU_CAPABILITY=avx2 TDMPC2_CPU_KERNELS=0

.PHONY: install train test test-numerics lint format

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,ogbench,metaworld]'
	@touch $@

install: $(VENV)/.installed

train: install
	$(PY) tdmpc2/first_run.py $(if $(TASK),task=$(TASK)) $(ARGS)

test: install lint
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-numerics: install
	@for setting in $(NUMERICS); do \
		echo "== $$setting"; \
		env $$setting $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(NUMERIC_TESTS) \
			$(PYTEST_ARGS) || exit 1; \
	done

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
