# custseg — every command creates what it needs (.venv with the project and its dev deps).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The template linters live in a venv of their own: their pins (checkov's) must not move
# the runtime libraries the tests share with the function image.
LINT_VENV := .venv-lint
LINT_STAMP := $(LINT_VENV)/.installed
LINT_TOOLS := 'cfn-lint>=1.0' 'checkov>=3.0' 'aws-sam-translator>=1.90'
# SAM CLI pins its own cfn-lint and translator: a venv of its own too
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed

.PHONY: venv run test lint unit bench fuzz lock clean

# The runtime libraries come from requirements.lock (what the function image installs);
# the dev tools resolve around them.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

$(LINT_STAMP):
	test -x $(LINT_VENV)/bin/python || $(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LINT_VENV)/bin/python -m pip install --quiet $(LINT_TOOLS)
	touch $(LINT_STAMP)

$(SAM_STAMP):
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet 'aws-sam-cli>=1.120'
	touch $(SAM_STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/custseg demo

lint: $(STAMP) $(LINT_STAMP) $(SAM_STAMP)
	$(BIN)/ruff check shared functions tests scripts
	$(BIN)/ruff format --check shared functions tests scripts
	$(BIN)/mypy
	$(LINT_VENV)/bin/cfn-lint infra/template.yaml
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint -t infra/template.yaml
	$(LINT_VENV)/bin/checkov --quiet --compact --skip-download -f infra/template.yaml --framework cloudformation

unit: $(STAMP)
	$(BIN)/pytest

test: lint unit

bench: $(STAMP)
	$(BIN)/python scripts/bench_order_bound.py
	$(BIN)/python scripts/bench.py

fuzz: $(STAMP)
	$(BIN)/python scripts/fuzz.py --cases $${CASES:-2000}

lock:
	scripts/lock.sh

clean:
	rm -rf $(VENV) $(LINT_VENV) $(SAM_VENV) custseg-out .pytest_cache .mypy_cache .ruff_cache
