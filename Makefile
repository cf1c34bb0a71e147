# kitflow: the quickstart (make demo, make test) and one target per environment.
# Each orchestrator gets its own virtualenv (Airflow 3.3 and Prefect 3.9 cannot share one).

SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PYTEST_ARGS ?=
export UV_LINK_MODE ?= copy

.PHONY: help uv env env-core env-airflow env-prefect env-dagster test test-core test-airflow \
        test-prefect test-dagster lint demo example-airflow example-prefect example-dagster \
        bench clean

help:
	@echo "make demo            train, pack and run the sentiment example end to end"
	@echo "make test            create every environment, lint, and run the whole suite"
	@echo "make test-core       core tests only (.venv)"
	@echo "make test-airflow    Airflow provider tests (.venvs/airflow)"
	@echo "make test-prefect    Prefect integration tests (.venvs/prefect)"
	@echo "make test-dagster    Dagster integration tests (.venvs/dagster)"
	@echo "make lint            ruff and mypy"
	@echo "make bench           run the benchmarks in benchmarks/"

uv:
	@command -v uv >/dev/null 2>&1 || test -x "$(UV)" || python3 -m pip install --quiet uv || \
	    python3 -m pip install --quiet --user uv

env: env-core env-airflow env-prefect env-dagster

env-core: uv
	$(UV) sync --locked

env-airflow: uv
	UV_PROJECT_ENVIRONMENT=.venvs/airflow $(UV) sync --locked --package airflow-provider-kitflow

env-prefect: uv
	UV_PROJECT_ENVIRONMENT=.venvs/prefect $(UV) sync --locked --package prefect-kitflow

env-dagster: uv
	UV_PROJECT_ENVIRONMENT=.venvs/dagster $(UV) sync --locked --package dagster-kitflow

test: lint test-core test-airflow test-prefect test-dagster

test-core: env-core
	.venv/bin/python -m pytest tests/core tests/e2e $(PYTEST_ARGS)

test-airflow: env-airflow
	.venvs/airflow/bin/python -m pytest tests/airflow $(PYTEST_ARGS)

test-prefect: env-prefect
	.venvs/prefect/bin/python -m pytest tests/prefect $(PYTEST_ARGS)

test-dagster: env-dagster
	.venvs/dagster/bin/python -m pytest tests/dagster $(PYTEST_ARGS)

lint: env-core
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

demo: env-core
	.venv/bin/python examples/sentiment/demo.py

example-airflow: env-airflow
	.venvs/airflow/bin/python examples/airflow/run_example.py

example-prefect: env-prefect
	.venvs/prefect/bin/python examples/prefect/run_example.py

example-dagster: env-dagster
	.venvs/dagster/bin/python examples/dagster/run_example.py

bench: env-core
	.venv/bin/python benchmarks/pack.py
	.venv/bin/python benchmarks/transfer.py
	.venv/bin/python benchmarks/inference.py

clean:
	rm -rf .venv .venvs .pytest_cache .mypy_cache .ruff_cache .demo
