# Run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -E '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install the locked dependencies and the package

demo: $(STAMP) ## Run the whole job on built-in synthetic data
	$(BIN)/healthscore demo

test: $(STAMP) java-check ## Run the whole test suite (notebooks and the Spark tests included)
	$(BIN)/python -m pytest

test-fast: $(STAMP) ## The quick loop: every test not marked slow (under a minute)
	$(BIN)/python -m pytest -m "not slow" -q

java-check: $(STAMP) ## Check for Java 17+ (the Spark engine and its tests need it; says how to install it)
	@$(BIN)/python -c "import sys; from ml.spark import java_problem; p = java_problem(); \
	  print(f'warning: {p} Until then the Spark tests are skipped.' if p else 'java: ok (Spark engine available)', \
	  file=sys.stderr if p else sys.stdout)"

bench: $(STAMP) ## Run the speed and memory benchmarks (ratios against baselines measured in the same run)
	$(BIN)/python benchmarks/run.py

lint: $(STAMP) ## Lint with ruff
	$(BIN)/ruff check ml tests benchmarks
	$(BIN)/ruff format --check ml tests benchmarks

lock: ## Re-resolve the lock file from pyproject.toml (needs the package registry)
	rm -rf /tmp/healthscore-lock && $(PYTHON) -m venv /tmp/healthscore-lock
	/tmp/healthscore-lock/bin/pip install --quiet -e '.[dev,spark]'
	{ echo "# Exact versions the set-up installs (make venv). Regenerate with: make lock"; echo "setuptools==65.5.0"; \
	  /tmp/healthscore-lock/bin/pip freeze --exclude-editable | grep -v -E '^(pip|setuptools)=='; } > requirements.lock

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

.PHONY: help venv demo test test-fast java-check bench lint lock clean
