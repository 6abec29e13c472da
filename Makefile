# custseg — every command creates what it needs (.venv with the project and its dev deps).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint unit bench fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/custseg demo

lint: $(STAMP)
	$(BIN)/ruff check shared functions tests scripts
	$(BIN)/ruff format --check shared functions tests scripts
	$(BIN)/mypy
	$(BIN)/cfn-lint infra/template.yaml
	$(BIN)/checkov --quiet --compact --skip-download -f infra/template.yaml --framework cloudformation

unit: $(STAMP)
	$(BIN)/pytest

test: lint unit

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

fuzz: $(STAMP)
	$(BIN)/python scripts/fuzz.py --cases $${CASES:-2000}

clean:
	rm -rf $(VENV) custseg-out .pytest_cache .mypy_cache .ruff_cache
