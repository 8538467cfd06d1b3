"""Model names ("provider:model-id") → Agno models, what a call costs, and whether a failure is worth a retry.

One place decides all three so the agent runtime, the router and the cost report agree on what a model is.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from agno.exceptions import (
    AgnoError,
    ContextWindowExceededError,
    ModelAuthenticationError,
    ModelRateLimitError,
)

from tdev.errors import (
    AgentError,
    ConfigurationError,
    TDevError,
    TransientError,
    UnknownModelProviderError,
)
from tdev.llm.offline import OfflineModel
from tdev.llm.providers import SUPPORTED_PROVIDERS, build_model

if TYPE_CHECKING:
    from agno.models.base import Model

_EXAMPLES = "e.g. offline:tdev-offline-1 or bedrock:amazon.nova-lite-v1:0"


# ------------------------------------------------------------------------------------------ names
def parse_model_name(name: str) -> tuple[str, str]:
    """Split "provider:model-id" at the first colon (Bedrock ids contain colons themselves)."""
    provider, colon, model_id = name.strip().partition(":")
    provider, model_id = provider.strip().lower(), model_id.strip()
    if not colon or not provider or not model_id:
        raise UnknownModelProviderError(
            f"malformed model name {name!r}: expected provider:model-id ({_EXAMPLES}); "
            f"supported providers: {', '.join(SUPPORTED_PROVIDERS)}",
            field="model",
        )
    return provider, model_id


def check_model_name(name: str) -> str:
    """Reject, before any work is accepted, a model no provider here can serve; returns the name."""
    provider, _ = parse_model_name(name)
    if provider not in SUPPORTED_PROVIDERS:
        raise UnknownModelProviderError(
            f"unknown model provider {provider!r} in {name!r}; supported providers: "
            f"{', '.join(SUPPORTED_PROVIDERS)} ({_EXAMPLES})",
            field="model",
        )
    return name


@lru_cache(maxsize=256)
def _checked(name: str) -> tuple[str, str]:
    """(provider, model id) of a supported model name, parsed once per name and container (a refused name
    raises every time: lru_cache keeps no exception)."""
    check_model_name(name)
    return parse_model_name(name)


_bedrock_session: Any = None


def use_bedrock_session(session: Any) -> None:
    """Call Bedrock with this boto3 Session instead of the default credential chain.

    Deployed functions never call this (their role's credentials are the default chain); the local
    runtime does, because it points the default chain at the AWS emulation while Bedrock stays real.
    """
    global _bedrock_session
    _bedrock_session = session


def resolve_model(name: str, **options: Any) -> Model:
    """A fresh Agno model for `name` (see tdev.llm.providers); a provider's SDK is imported on first use.

    `options` reach the Agno class when it accepts them (e.g. an httpx `http_client` in tests).
    """
    provider, model_id = _checked(name)
    if provider == "offline":
        return OfflineModel(id=model_id)
    if provider == "bedrock":
        if _bedrock_session is not None:
            options.setdefault("session", _bedrock_session)
        else:
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            options.setdefault("aws_region", region)
    return build_model(provider, model_id, **options)


# ------------------------------------------------------------------------------------------ prices
@dataclass(frozen=True)
class Price:
    """USD per 1,000 tokens."""

    input_per_1k: float
    output_per_1k: float


# Amazon Bedrock on-demand prices, US East (N. Virginia), as https://aws.amazon.com/bedrock/pricing/
# showed them in mid-2025 -- written FROM MEMORY, not transcribed from the live page: check it before using
# them for billing. Batch, provisioned throughput, prompt caching and long-context surcharges are not
# modelled. Other providers' prices are in tdev.llm.models_data (same caveat); this table wins over it.
PRICES: dict[str, Price] = {
    "offline:tdev-offline-1": Price(0.0, 0.0),
    "bedrock:amazon.nova-micro-v1:0": Price(0.000035, 0.00014),
    "bedrock:amazon.nova-lite-v1:0": Price(0.00006, 0.00024),
    "bedrock:amazon.nova-pro-v1:0": Price(0.0008, 0.0032),
    "bedrock:amazon.nova-premier-v1:0": Price(0.0025, 0.0125),
    "bedrock:anthropic.claude-3-haiku-20240307-v1:0": Price(0.00025, 0.00125),
    "bedrock:anthropic.claude-3-5-haiku-20241022-v1:0": Price(0.0008, 0.004),
    "bedrock:anthropic.claude-3-5-sonnet-20240620-v1:0": Price(0.003, 0.015),
    "bedrock:anthropic.claude-3-5-sonnet-20241022-v2:0": Price(0.003, 0.015),
    "bedrock:anthropic.claude-3-7-sonnet-20250219-v1:0": Price(0.003, 0.015),
    "bedrock:anthropic.claude-sonnet-4-20250514-v1:0": Price(0.003, 0.015),
    "bedrock:anthropic.claude-opus-4-20250514-v1:0": Price(0.015, 0.075),
    "bedrock:meta.llama3-1-8b-instruct-v1:0": Price(0.00022, 0.00022),
    "bedrock:meta.llama3-1-70b-instruct-v1:0": Price(0.00072, 0.00072),
    "bedrock:mistral.mistral-small-2402-v1:0": Price(0.001, 0.003),
    "bedrock:mistral.mistral-large-2402-v1:0": Price(0.004, 0.012),
}

# Cross-region inference profiles ("us.anthropic...", "eu.amazon...") bill as their base model.
_INFERENCE_PROFILE = re.compile(r"^(?:us-gov|us|eu|apac|jp|au|ca|global)\.(?=[a-z0-9-]+\.)")


@lru_cache(maxsize=4)
def _price_overrides(configured: str | None) -> dict[str, Price]:
    """TDEV_MODEL_PRICES: {"provider:model-id": [USD per 1k input, USD per 1k output], ...}."""
    if not configured:
        return {}
    try:
        table = json.loads(configured)
        return {str(name): Price(float(pair[0]), float(pair[1])) for name, pair in table.items()}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ConfigurationError(
            'TDEV_MODEL_PRICES must be {"provider:model-id": [input_per_1k, output_per_1k], ...}'
        ) from exc


def price_of(model_name: str) -> Price | None:
    """The price of a model, or None when the table does not know it (malformed names included).

    The deployment's own prices (TDEV_MODEL_PRICES: negotiated rates, or a price for the offline model to
    try budgets locally) win over both tables."""
    from tdev.settings import configured_model_prices

    override = _price_overrides(configured_model_prices()).get(model_name.strip())
    if override is not None:
        return override
    try:
        provider, model_id = parse_model_name(model_name)
    except UnknownModelProviderError:
        return None
    if provider == "offline":
        return PRICES["offline:tdev-offline-1"]  # every offline model is free
    if provider == "bedrock":
        model_id = _INFERENCE_PROFILE.sub("", model_id)
    known = PRICES.get(f"{provider}:{model_id}")
    if known is not None:
        return known
    from tdev.llm.models_data import info

    model = info(f"{provider}:{model_id}")
    if model is None or model.input_per_1k is None or model.output_per_1k is None:
        return None
    return Price(model.input_per_1k, model.output_per_1k)


def price_known(model_name: str) -> bool:
    """False when `cost_usd` had to answer 0.0 for lack of a price: callers flag such costs as unknown."""
    return price_of(model_name) is not None


def cost_usd(model_name: str, input_tokens: int, output_tokens: int) -> float:
    """What a call cost in USD; 0.0 for a model without a price (see `price_known`)."""
    price = price_of(model_name)
    if price is None:
        return 0.0
    cost = input_tokens / 1000 * price.input_per_1k + output_tokens / 1000 * price.output_per_1k
    return round(cost, 10)


# ------------------------------------------------------------------------------------------ errors
# Error codes of the Bedrock Runtime API (and AWS-wide ones). Retry these: the same call can succeed later.
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalServerException",
        "InternalServerError",
        "InternalFailure",
        "ModelNotReadyException",
        "ModelTimeoutException",
        "ModelStreamErrorException",
        "ModelErrorException",  # the model failed while processing (424), not the request
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# Retrying these only burns the retry budget: the request, the permissions or the configuration are wrong.
_PERMANENT_CODES = frozenset(
    {
        "ValidationException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "UnauthorizedException",
        "ResourceNotFoundException",
        "ServiceQuotaExceededException",
        "ConflictException",
    }
)
_TRANSIENT_WORDS = (
    "throttl",
    "too many requests",
    "rate limit",
    "rate exceeded",
    "service unavailable",
    "temporarily unavailable",
    "internal server error",
    "overloaded",
    "timed out",
    "timeout",
    "connection reset",
    "connection aborted",
    "connection refused",
    "could not connect",
)
_PERMANENT_WORDS = (
    "access denied",
    "not authorized",
    "unauthorized",
    "forbidden",
    "not found",
    "invalid",
    "malformed",
    "content filter",
    "guardrail",
    "blocked by",
)
_CODE_IN_RESPONSE = re.compile(r"""['"]Code['"]:\s*['"]([A-Za-z.]+)['"]""")  # str(ClientError.response)
_CODE_IN_MESSAGE = re.compile(r"\(([A-Za-z.]+)\) when calling")  # str(ClientError)
_STATUS_IN_RESPONSE = re.compile(r"""['"]HTTPStatusCode['"]:\s*(\d{3})""")


def _by_code(code: str | None) -> type[TDevError] | None:
    if not code:
        return None
    code = code.rsplit(".", 1)[-1]  # some SDKs prefix a namespace
    if code in _TRANSIENT_CODES:
        return TransientError
    if code in _PERMANENT_CODES:
        return AgentError
    return None


def _by_status(status: int | None) -> type[TDevError] | None:
    if status is None:
        return None
    if status in (408, 429) or status >= 500:
        return TransientError
    if 400 <= status < 500:
        return AgentError
    return None


def _by_text(text: str) -> type[TDevError] | None:
    """Codes and statuses quoted in a message (Agno wraps a ClientError as str(response)), then words."""
    for pattern in (_CODE_IN_RESPONSE, _CODE_IN_MESSAGE):
        match = pattern.search(text)
        verdict = _by_code(match.group(1)) if match else None
        if verdict is not None:
            return verdict
    match = _STATUS_IN_RESPONSE.search(text)
    verdict = _by_status(int(match.group(1))) if match else None
    if verdict is not None:
        return verdict
    lowered = text.lower()
    if any(word in lowered for word in _PERMANENT_WORDS):
        return AgentError
    if any(word in lowered for word in _TRANSIENT_WORDS):
        return TransientError
    return None


def _classify_one(exc: BaseException) -> type[TDevError] | None:
    """A verdict from this exception alone, or None when it carries no signal."""
    if isinstance(exc, TransientError):
        return TransientError
    if isinstance(exc, TDevError):
        return AgentError
    botocore_exceptions = sys.modules.get("botocore.exceptions")  # not loaded → no botocore error can exist
    if botocore_exceptions is not None:
        if isinstance(exc, botocore_exceptions.ClientError):
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return _by_code(error.get("Code")) or _by_status(status) or AgentError
        if isinstance(exc, (botocore_exceptions.HTTPClientError, botocore_exceptions.ConnectionError)):
            return TransientError  # read/connect timeouts, endpoint unreachable, connection closed
        if isinstance(exc, botocore_exceptions.BotoCoreError):
            return AgentError  # no credentials, no region, bad parameters: configuration, not luck
    if isinstance(exc, ModelRateLimitError):
        return TransientError
    if isinstance(exc, ContextWindowExceededError | ModelAuthenticationError):
        return AgentError
    if isinstance(exc, AgnoError):  # ModelProviderError and friends
        # Bedrock errors arrive with status_code 502 whatever happened: trust the quoted response first.
        return _by_text(str(exc.message)) or _by_status(exc.status_code)
    if isinstance(exc, TimeoutError | ConnectionError):
        return TransientError
    if "Timeout" in type(exc).__name__ or "Connect" in type(exc).__name__:
        return TransientError  # httpx.ReadTimeout, requests.ConnectionError, ... without importing them
    if isinstance(exc, ValueError | TypeError | KeyError | AttributeError | NotImplementedError):
        return AgentError  # a bug or bad input: the next attempt would fail the same way
    return _by_text(str(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its explicit causes (`raise ... from`), deepest first: the root cause says most.

    Implicit `__context__` is not followed: it may be an unrelated error that was being handled at the time.
    """
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__
    return reversed(seen)


def classify_provider_error(exc: BaseException) -> type[TDevError]:
    """TransientError (the workflow retries it) or AgentError (it fails the task now).

    Unknown failures are AgentError: retrying something we cannot name only delays the same answer.
    """
    for link in _chain(exc):
        verdict = _classify_one(link)
        if verdict is not None:
            return verdict
    return AgentError


def provider_error_reason(exc: BaseException, limit: int = 500) -> str:
    """The provider's own words for a failure ("ThrottlingException: Too many requests"), kept short."""
    reason = ""
    botocore_exceptions = sys.modules.get("botocore.exceptions")
    for link in _chain(exc):
        if botocore_exceptions is not None and isinstance(link, botocore_exceptions.ClientError):
            error = link.response.get("Error", {})
            reason = f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}".rstrip(": ")
            break
    if not reason:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"
