"""One registry of functions (functions/registry.py): the stacks deploy exactly its functions, each with
exactly the environment variables of its typed contract (tdev.environment), and the local runtime and the
state machine list the same functions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.registry import FUNCTIONS, all_layers, functions_triggered_by, layers_of
from statemachines.request_workflow import WORKFLOW_FUNCTIONS
from tdev.environment import Var
from tdev_cli import runtime
from tests.infrastructure.conftest import Synthesized, synthesize


def deployed_functions(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """Our functions across every stack by name (the shared construct names the service after the folder)."""
    found: dict[str, dict[str, Any]] = {}
    for stack in synth.stacks.all:
        for resource in synth.template_json(stack)["Resources"].values():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            variables = resource["Properties"].get("Environment", {}).get("Variables", {})
            name = variables.get(Var.POWERTOOLS_SERVICE_NAME)
            if name is not None:
                assert name not in found, f"{name} is deployed twice"
                found[name] = resource["Properties"]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_the_stacks_deploy_exactly_the_registered_functions(
    environment: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(environment)
    assert set(deployed_functions(synth)) == set(FUNCTIONS)


@pytest.mark.slow
@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_each_function_gets_exactly_the_variables_of_its_contract(
    environment: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(environment)
    for name, properties in deployed_functions(synth).items():
        contract = FUNCTIONS[name].environment
        variables = set(properties["Environment"]["Variables"])
        required = contract.variables() - contract.optional_in_stack
        assert variables >= required, f"{name} lacks {sorted(required - variables)}"
        undeclared = sorted(variables - contract.variables())
        assert not undeclared, f"{name} sets {undeclared}, which {contract.__name__} does not declare"


@pytest.mark.slow
def test_each_function_gets_exactly_its_layers(dev: Synthesized) -> None:
    for name, properties in deployed_functions(dev).items():
        # base .. its own layers, then core
        assert len(properties["Layers"]) == len(layers_of(name)) + 1, name


def test_the_local_runtime_and_the_workflow_list_the_registered_functions() -> None:
    assert set(WORKFLOW_FUNCTIONS) == set(functions_triggered_by("workflow"))
    local = {*runtime.FUNCTIONS, *runtime.MESSAGING_FUNCTIONS, *runtime.REALTIME_FUNCTIONS, "authorizer"}
    assert local == set(FUNCTIONS)
    for name, function in FUNCTIONS.items():
        assert (function.code_dir / "handler.py").is_file(), name


@pytest.fixture(scope="module")
def with_openai(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """dev with OpenAI enabled beside Bedrock (stand-in layers, the providers layer included)."""
    layers = tmp_path_factory.mktemp("layers-openai")
    for name in all_layers(("bedrock", "openai")):
        (layers / name / "python").mkdir(parents=True)
        (layers / name / "python" / "PLACEHOLDER.txt").write_text("tests stand in for `make layer`\n")
    return synthesize(
        tmp_path_factory.mktemp("cdk-openai"), layers, environment="dev", providers="bedrock,openai"
    )


@pytest.mark.slow
def test_an_enabled_api_key_provider_gets_a_secret_its_sdk_and_a_grant_only_where_models_are_called(
    with_openai: Synthesized,
) -> None:
    # Then the data stack holds one secret for OpenAI (Bedrock needs none), encrypted with the data key
    data = with_openai.template_json(with_openai.stacks.data)
    secrets = [
        r
        for r in data["Resources"].values()
        if r["Type"] == "AWS::SecretsManager::Secret" and "/providers/" in r["Properties"]["Name"]
    ]  # (beside the platform's own, tests/infrastructure/test_secrets_stack.py)
    assert [s["Properties"]["Name"] for s in secrets] == ["tdev-dev/providers/openai"]
    assert "KmsKeyId" in secrets[0]["Properties"]
    functions = deployed_functions(with_openai)
    for name, properties in functions.items():
        variables = properties["Environment"]["Variables"]
        if FUNCTIONS[name].calls_models:
            # And model callers find it by name and carry the providers layer
            assert json.loads(variables[Var.TDEV_PROVIDER_SECRETS]) == {"openai": "tdev-dev/providers/openai"}
            assert len(properties["Layers"]) == len(layers_of(name, ("bedrock", "openai"))) + 1
            assert "providers" in layers_of(name, ("bedrock", "openai"))
        else:
            assert Var.TDEV_PROVIDER_SECRETS not in variables, name
            assert "providers" not in layers_of(name, ("bedrock", "openai"))
    # And only model callers' roles may read it
    readers = set()
    for stack in with_openai.stacks.all:
        for resource in with_openai.template_json(stack)["Resources"].values():
            if resource["Type"] != "AWS::IAM::Policy":
                continue
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                if statement.get("Sid") == "ReadProviderApiKeys":
                    assert statement["Action"] == "secretsmanager:GetSecretValue"
                    readers.add(resource["Properties"]["PolicyName"])
    assert len(readers) == sum(1 for f in FUNCTIONS.values() if f.calls_models)
