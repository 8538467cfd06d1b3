"""Model names, prices and error classification: the three answers every agent run depends on."""

from __future__ import annotations

import pytest
from agno.exceptions import ContextWindowExceededError, ModelProviderError, ModelRateLimitError
from agno.models.aws.bedrock import AwsBedrock
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from tdev.errors import AgentError, TDevError, TransientError, UnknownModelProviderError
from tdev.llm.catalog import (
    PRICES,
    Price,
    classify_provider_error,
    cost_usd,
    parse_model_name,
    price_known,
    provider_error_reason,
    resolve_model,
)
from tdev.llm.offline import OfflineModel
from tdev.settings import OFFLINE_MODEL


# -------------------------------------------------------------------------------------- resolving
def test_the_offline_model_name_resolves_to_the_offline_model() -> None:
    model = resolve_model(OFFLINE_MODEL)
    assert isinstance(model, OfflineModel)
    assert model.id == "tdev-offline-1"


def test_a_bedrock_name_resolves_to_agnos_bedrock_model_in_the_lambda_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    model = resolve_model("bedrock:anthropic.claude-3-5-haiku-20241022-v1:0")
    assert isinstance(model, AwsBedrock)
    assert model.id == "anthropic.claude-3-5-haiku-20241022-v1:0"  # colons after the first stay in the id
    assert model.aws_region == "eu-west-1"
    assert model.client is None  # no client (and no network) until the first call


def test_bedrock_falls_back_to_the_default_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-2")
    model = resolve_model("bedrock:amazon.nova-lite-v1:0")
    assert isinstance(model, AwsBedrock)
    assert model.aws_region == "ap-northeast-2"


def test_each_resolution_is_a_fresh_model() -> None:
    assert resolve_model(OFFLINE_MODEL) is not resolve_model(OFFLINE_MODEL)


def test_provider_names_are_case_insensitive_and_trimmed() -> None:
    assert parse_model_name("  Bedrock:amazon.nova-pro-v1:0 ") == ("bedrock", "amazon.nova-pro-v1:0")


def test_an_unknown_provider_is_refused_with_the_supported_ones_listed() -> None:
    with pytest.raises(UnknownModelProviderError) as raised:
        resolve_model("nosuchvendor:gpt-4o")
    message = str(raised.value)
    assert "'nosuchvendor'" in message
    assert "offline" in message and "bedrock" in message
    assert raised.value.field == "model"
    assert raised.value.status_code == 400


@pytest.mark.parametrize(
    "name", ["", "   ", "offline", "nova-lite", ":tdev-offline-1", "bedrock:", "bedrock:  "]
)
def test_a_malformed_name_is_refused(name: str) -> None:
    with pytest.raises(UnknownModelProviderError, match="provider:model-id"):
        resolve_model(name)


# ------------------------------------------------------------------------------------------ prices
def test_the_price_table_is_well_formed() -> None:
    for name, price in PRICES.items():
        provider, _ = parse_model_name(name)
        assert provider in {"offline", "bedrock"}  # other providers' prices live in tdev.llm.models_data
        assert isinstance(price, Price)
        assert price.input_per_1k >= 0 and price.output_per_1k >= 0
    for model_id in (
        "amazon.nova-micro-v1:0",
        "amazon.nova-lite-v1:0",
        "amazon.nova-pro-v1:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        "anthropic.claude-sonnet-4-20250514-v1:0",
        "meta.llama3-1-8b-instruct-v1:0",
        "mistral.mistral-large-2402-v1:0",
    ):
        assert f"bedrock:{model_id}" in PRICES


def test_prices_cannot_be_changed_at_runtime() -> None:
    with pytest.raises(AttributeError):
        PRICES["bedrock:amazon.nova-lite-v1:0"].input_per_1k = 0.0  # type: ignore[misc]


def test_a_thousand_tokens_each_way_cost_the_two_prices_summed() -> None:
    price = PRICES["bedrock:amazon.nova-lite-v1:0"]
    cost = cost_usd("bedrock:amazon.nova-lite-v1:0", 1000, 1000)
    assert cost == pytest.approx(price.input_per_1k + price.output_per_1k)
    assert cost == pytest.approx(0.0003)


def test_cost_scales_with_each_direction_separately() -> None:
    # 2,000 input tokens at $0.003/1K + 500 output tokens at $0.015/1K
    assert cost_usd("bedrock:anthropic.claude-sonnet-4-20250514-v1:0", 2000, 500) == pytest.approx(0.0135)
    assert cost_usd("bedrock:anthropic.claude-sonnet-4-20250514-v1:0", 0, 0) == 0.0


@pytest.mark.parametrize("prefix", ["us.", "eu.", "apac.", "global."])
def test_a_cross_region_inference_profile_costs_what_its_base_model_costs(prefix: str) -> None:
    base = "anthropic.claude-3-7-sonnet-20250219-v1:0"
    assert price_known(f"bedrock:{prefix}{base}")
    assert cost_usd(f"bedrock:{prefix}{base}", 1234, 567) == cost_usd(f"bedrock:{base}", 1234, 567)


def test_offline_models_are_free() -> None:
    assert price_known(OFFLINE_MODEL)
    assert cost_usd(OFFLINE_MODEL, 10_000, 10_000) == 0.0
    assert cost_usd("offline:another-template-set", 10_000, 10_000) == 0.0


@pytest.mark.parametrize(
    "name",
    ["bedrock:some.model-nobody-priced-v9:0", "openai:gpt-nobody-priced", "ollama:llama3.1", "not a name"],
)
def test_an_unknown_price_costs_zero_and_says_so(name: str) -> None:
    assert cost_usd(name, 1000, 1000) == 0.0
    assert not price_known(name)


# ------------------------------------------------------------------------------------------ errors
def client_error(code: str, status: int, message: str = "details") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Converse",
    )


def as_agno_wraps_it(error: ClientError) -> ModelProviderError:
    """What agno's AwsBedrock raises for a ClientError: the response as text, status 502, chained."""
    try:
        raise ModelProviderError(
            message=str(error.response), model_name="AwsBedrock", model_id="m"
        ) from error
    except ModelProviderError as wrapped:
        return wrapped


BEDROCK_CODES = [
    ("ThrottlingException", 429, TransientError),
    ("ServiceUnavailableException", 503, TransientError),
    ("InternalServerException", 500, TransientError),
    ("ModelNotReadyException", 429, TransientError),
    ("ModelTimeoutException", 408, TransientError),
    ("ValidationException", 400, AgentError),
    ("AccessDeniedException", 403, AgentError),
    ("ResourceNotFoundException", 404, AgentError),
    ("ServiceQuotaExceededException", 400, AgentError),
    ("SomethingNewException", 500, TransientError),  # unknown code: the HTTP status decides
    ("SomethingNewException", 400, AgentError),
]


@pytest.mark.parametrize(("code", "status", "expected"), BEDROCK_CODES)
def test_a_bedrock_client_error_is_classified_by_its_code(code: str, status: int, expected: type) -> None:
    assert classify_provider_error(client_error(code, status)) is expected


@pytest.mark.parametrize(("code", "status", "expected"), BEDROCK_CODES)
def test_agnos_wrapped_client_error_is_classified_like_the_original(
    code: str, status: int, expected: type
) -> None:
    assert classify_provider_error(as_agno_wraps_it(client_error(code, status))) is expected


@pytest.mark.parametrize(("code", "status", "expected"), BEDROCK_CODES[:8])
def test_the_wrapper_alone_is_classified_from_its_message(code: str, status: int, expected: type) -> None:
    # Given only what survives in text (the chain lost): agno always says status 502
    error = ModelProviderError(message=str(client_error(code, status).response), model_name="AwsBedrock")
    assert error.status_code == 502
    assert classify_provider_error(error) is expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ModelProviderError("upstream says no", status_code=401), AgentError),
        (ModelProviderError("slow down", status_code=429), TransientError),
        (ModelProviderError("bad gateway", status_code=502), TransientError),
        (ModelRateLimitError("rate limited"), TransientError),
        (ContextWindowExceededError("prompt is too long"), AgentError),
        (ModelProviderError("Output blocked by content filtering policy", status_code=400), AgentError),
        (ModelProviderError("Read timeout on endpoint URL"), TransientError),
        (ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"), TransientError),
        (ConnectTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"), TransientError),
        (
            EndpointConnectionError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"),
            TransientError,
        ),
        (NoCredentialsError(), AgentError),
        (TimeoutError("timed out"), TransientError),
        (ConnectionResetError("reset by peer"), TransientError),
        (ValueError("Image content is required for AWS Bedrock."), AgentError),
        (RuntimeError("the service is temporarily unavailable"), TransientError),
        (RuntimeError("something nobody anticipated"), AgentError),
        (TransientError("already classified"), TransientError),
        (AgentError("already classified"), AgentError),
    ],
)
def test_error_classification_table(exc: BaseException, expected: type[TDevError]) -> None:
    assert classify_provider_error(exc) is expected


def test_the_root_cause_wins_over_a_generic_wrapper() -> None:
    try:
        try:
            raise ValueError("Unsupported image format")
        except ValueError as cause:
            raise ModelProviderError("Unsupported image format", status_code=502) from cause
    except ModelProviderError as wrapped:
        assert classify_provider_error(wrapped) is AgentError  # 502 alone would have said "retry"


def test_the_reason_is_the_providers_code_and_message() -> None:
    wrapped = as_agno_wraps_it(client_error("ThrottlingException", 429, "Too many requests"))
    assert provider_error_reason(wrapped) == "ThrottlingException: Too many requests"
    assert provider_error_reason(TimeoutError("read timed out")) == "TimeoutError: read timed out"
    assert len(provider_error_reason(RuntimeError("x" * 5000))) == 500
