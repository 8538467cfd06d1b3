"""Each function's environment contract (tdev.environment): typed, validated at cold start, one place."""

from __future__ import annotations

import pytest

from functions.registry import FUNCTIONS
from tdev.environment import ApiEnvironment, AuthorizerEnvironment, FunctionEnvironment, Var
from tdev.errors import ConfigurationError


def test_every_contract_variable_is_a_named_var_and_every_var_is_used() -> None:
    declared = set().union(*(f.environment.variables() for f in FUNCTIONS.values()))
    assert declared == {v.value for v in Var}


def test_a_missing_or_invalid_variable_is_named() -> None:
    # Given an API environment without TABLE_NAME and with a state machine that is no ARN
    environ = {"STATE_MACHINE_ARN": "not-an-arn", "POWERTOOLS_LOG_LEVEL": "LOUD"}
    # When it is validated, Then every bad variable is named
    with pytest.raises(ConfigurationError, match="POWERTOOLS_LOG_LEVEL, STATE_MACHINE_ARN, TABLE_NAME"):
        ApiEnvironment.load(environ)


def test_a_valid_environment_is_typed() -> None:
    environment = AuthorizerEnvironment.load(
        {"TABLE_NAME": "tdev-dev", "REDIS_URL": "rediss://cache:6379", "TDEV_JWT_ISSUER": "https://issuer"}
    )
    assert environment.table_name == "tdev-dev"
    assert environment.jwt_roles_claim == "cognito:groups"


def test_validation_happens_at_cold_start_in_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TABLE_NAME", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "api")
    with pytest.raises(ConfigurationError, match="TABLE_NAME"):
        ApiEnvironment.at_cold_start()
    # Outside Lambda the handlers import without a deployment's variables (tests, local runtime).
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    assert isinstance(ApiEnvironment.at_cold_start(), FunctionEnvironment)
