PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/chatstream demo --duration $${DEMO_DURATION:-20}

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not kafka"

lint: $(STAMP)
	$(BIN)/ruff check stream processors schemas infra tests
	$(BIN)/mypy stream processors schemas infra

bench: $(STAMP)
	$(BIN)/chatstream bench all --docs docs/benchmarks.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
