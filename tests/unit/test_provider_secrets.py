"""Deployed, an API-key provider's key comes from the Secrets Manager secret the stack created for it."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from tdev.errors import ConfigurationError
from tdev.llm import providers


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with mock_aws():
        from tdev import container

        container.reset()  # the secrets accessor's hour-long cache starts empty
        yield boto3.client("secretsmanager", region_name="us-east-1")


def test_the_model_gets_the_key_from_its_secret_and_reads_it_once_per_max_age(
    aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the secret the stack created, holding the key the operator put
    aws.create_secret(Name="tdev-dev/providers/openai", SecretString="sk-from-secrets-manager")
    monkeypatch.setenv("TDEV_PROVIDER_SECRETS", json.dumps({"openai": "tdev-dev/providers/openai"}))
    # When two OpenAI models are built
    first = providers.build_model("openai", "gpt-4.1-mini")
    aws.put_secret_value(SecretId="tdev-dev/providers/openai", SecretString="sk-rotated")
    second = providers.build_model("openai", "gpt-4.1-mini")
    # Then both carry the key, read once (tdev.secrets caches it for an hour)
    assert first.api_key == second.api_key == "sk-from-secrets-manager"  # type: ignore[attr-defined]


def test_without_a_configured_secret_agno_reads_the_providers_variable(
    aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TDEV_PROVIDER_SECRETS", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    model = providers.build_model("openai", "gpt-4.1-mini")
    assert model.api_key in (None, "sk-local")  # type: ignore[attr-defined]
    assert providers.api_key_from_secrets(providers.provider("openai")) is None


def test_a_malformed_secret_map_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDEV_PROVIDER_SECRETS", "openai=tdev")
    with pytest.raises(ConfigurationError, match="TDEV_PROVIDER_SECRETS"):
        providers.api_key_from_secrets(providers.provider("openai"))
