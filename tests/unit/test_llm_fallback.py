"""Fallback chains through the real provider clients: Bedrock Converse (botocore Stubber) and an OpenAI-
compatible HTTP provider (httpx MockTransport), with the shared breakers and rate limits on a real Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import httpx
import pytest
import redis
from botocore.stub import Stubber

from tdev.agents.chain import run_chain
from tdev.cache import connect
from tdev.errors import AgentError, TransientError
from tdev.llm.breaker import BreakerState
from tdev.llm.catalog import cost_usd, resolve_model
from tdev.llm.fallback import ChainExhaustedError, Guards, chain_for
from tdev.models import AgentSpec

SPEC = AgentSpec(
    name="CodeAgent", role="Writes code.", description="Writes code.", capabilities=["code"], instructions=[]
)
NOVA = "bedrock:amazon.nova-pro-v1:0"
GPT = "openai:gpt-4o-mini"
TOGETHER = "together:meta-llama/Llama-3.3-70B-Instruct-Turbo"
PROMPT = "Write a function that adds two numbers."


# ------------------------------------------------------------------------------------------ fakes
def bedrock_client() -> tuple[Any, Stubber]:
    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    return client, Stubber(client)


def converse_ok(text: str = "def add(a, b): return a + b") -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 1000, "outputTokens": 200, "totalTokens": 1200},
        "metrics": {"latencyMs": 10},
    }


def chat_completion(text: str = "def add(a, b):\n    return a + b") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2000, "completion_tokens": 500, "total_tokens": 2500},
    }


class Http:
    """An OpenAI-compatible endpoint answering from a script of responses (or exceptions)."""

    def __init__(self, *script: httpx.Response | Exception) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def resolver(bedrock: Any = None, http: Http | None = None) -> Callable[[str], Any]:
    def resolve(name: str) -> Any:
        if name.startswith("bedrock:"):
            model = resolve_model(name)
            model.client = bedrock
            return model
        assert http is not None
        return resolve_model(name, http_client=http.client(), api_key="test-key", max_retries=0)

    return resolve


def error_json(status: int, message: str, kind: str = "error") -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": kind, "code": None}})


@pytest.fixture
def guards(redis_url: str) -> Guards:
    return Guards.from_redis(connect(redis_url, decode_responses=True))


# ------------------------------------------------------------------------------------------ chain
def test_the_chain_is_request_then_spec_then_default_without_duplicates() -> None:
    assert chain_for(request_model="a:1", request_fallbacks=["b:1", "a:1"], spec_model="s:1",
                     spec_fallbacks=["t:1"], default_model="d:1") == ["a:1", "b:1"]  # fmt: skip
    assert chain_for(request_model=None, spec_model="s:1", spec_fallbacks=["t:1"], default_model="d:1") == [
        "s:1",
        "t:1",
    ]
    assert chain_for(request_model=None, request_fallbacks=["b:1"], spec_model="s:1", spec_fallbacks=["t:1"],
                     default_model="d:1") == ["s:1", "b:1"]  # fmt: skip
    assert chain_for(request_model=None, default_model="d:1") == ["d:1"]


# ---------------------------------------------------------------------------------- transient hops
@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 429),
        ("ServiceUnavailableException", 503),
        ("InternalServerException", 500),
        ("ModelTimeoutException", 408),
    ],
)
def test_a_transient_bedrock_error_moves_on_to_the_next_model(code: str, status: int) -> None:
    client, stub = bedrock_client()
    stub.add_client_error("converse", service_error_code=code, http_status_code=status)
    http = Http(httpx.Response(200, json=chat_completion()))
    with stub:
        chained = run_chain(SPEC, [NOVA, GPT], PROMPT, resolve=resolver(client, http))

    assert chained.run.model == GPT and "def add" in chained.run.output
    assert [(h.model, h.outcome) for h in chained.hops] == [(NOVA, "transient"), (GPT, "succeeded")]
    assert code in chained.hops[0].reason
    assert chained.run.usage.cost_usd == pytest.approx(cost_usd(GPT, 2000, 500))
    assert len(http.requests) == 1 and http.requests[0].url.path == "/v1/chat/completions"


@pytest.mark.parametrize(
    "failure",
    [
        error_json(429, "Rate limit reached for requests", "rate_limit_exceeded"),
        error_json(500, "The server had an error"),
        error_json(502, "Bad gateway"),
        error_json(503, "The engine is currently overloaded"),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("connection refused"),
    ],
    ids=["429", "500", "502", "503", "read-timeout", "connect-error"],
)
def test_a_transient_http_error_moves_on_to_bedrock(failure: httpx.Response | Exception) -> None:
    client, stub = bedrock_client()
    stub.add_response("converse", converse_ok())
    http = Http(failure)
    with stub:
        chained = run_chain(SPEC, [GPT, NOVA], PROMPT, resolve=resolver(client, http))

    assert chained.run.model == NOVA
    assert [h.outcome for h in chained.hops] == ["transient", "succeeded"]
    assert chained.run.usage.cost_usd == pytest.approx(cost_usd(NOVA, 1000, 200))


# -------------------------------------------------------------------------------- permanent errors
@pytest.mark.parametrize(
    ("code", "status"),
    [("ValidationException", 400), ("AccessDeniedException", 403), ("ResourceNotFoundException", 404)],
)
def test_a_permanent_bedrock_error_surfaces_without_trying_the_fallback(code: str, status: int) -> None:
    client, stub = bedrock_client()
    stub.add_client_error(
        "converse", service_error_code=code, service_message="nope", http_status_code=status
    )
    http = Http()  # any request would fail the test: the script is empty
    with stub, pytest.raises(AgentError) as raised:
        run_chain(SPEC, [NOVA, GPT], PROMPT, resolve=resolver(client, http))

    assert not isinstance(raised.value, TransientError)
    assert code in str(raised.value) and NOVA in str(raised.value)
    assert http.requests == []


@pytest.mark.parametrize(
    "failure",
    [
        error_json(400, "Invalid value for 'messages'", "invalid_request_error"),
        error_json(401, "Incorrect API key provided", "invalid_request_error"),
        error_json(
            400, "The response was filtered due to the prompt triggering content filter", "content_filter"
        ),
    ],
    ids=["bad-request", "auth", "content-filter"],
)
def test_a_permanent_http_error_surfaces_at_once(failure: httpx.Response) -> None:
    client, stub = bedrock_client()  # no response queued: a Bedrock call would fail the test
    http = Http(failure)
    with stub, pytest.raises(AgentError) as raised:
        run_chain(SPEC, [TOGETHER, NOVA], PROMPT, resolve=resolver(client, http))
    assert not isinstance(raised.value, TransientError)
    assert TOGETHER in str(raised.value)


def test_when_every_model_fails_transiently_the_error_is_transient_and_lists_each_hop() -> None:
    client, stub = bedrock_client()
    stub.add_client_error("converse", service_error_code="ThrottlingException", http_status_code=429)
    http = Http(error_json(503, "overloaded"))
    with stub, pytest.raises(ChainExhaustedError) as raised:
        run_chain(SPEC, [NOVA, GPT], PROMPT, resolve=resolver(client, http))

    assert isinstance(raised.value, TransientError)  # the state machine retries the task later
    assert [h.outcome for h in raised.value.hops] == ["transient", "transient"]
    assert NOVA in str(raised.value) and GPT in str(raised.value)


# -------------------------------------------------------------------------- breakers and limits
def test_an_open_breaker_skips_its_model_without_calling_it(guards: Guards) -> None:
    for _ in range(5):
        guards.breakers.record_failure(NOVA)
    client, stub = bedrock_client()  # nothing queued: a call would raise
    http = Http(httpx.Response(200, json=chat_completion()))
    with stub:
        chained = run_chain(SPEC, [NOVA, GPT], PROMPT, guards=guards, resolve=resolver(client, http))

    assert [(h.model, h.outcome) for h in chained.hops] == [(NOVA, "breaker_open"), (GPT, "succeeded")]


def test_five_transient_failures_through_the_chain_open_the_shared_breaker(guards: Guards) -> None:
    client, stub = bedrock_client()
    for _ in range(5):
        stub.add_client_error("converse", service_error_code="ThrottlingException", http_status_code=429)
    http = Http(*[httpx.Response(200, json=chat_completion()) for _ in range(6)])
    with stub:
        for _ in range(5):
            run_chain(SPEC, [NOVA, GPT], PROMPT, guards=guards, resolve=resolver(client, http))
        sixth = run_chain(SPEC, [NOVA, GPT], PROMPT, guards=guards, resolve=resolver(client, http))

    assert guards.breakers.state(NOVA) is BreakerState.OPEN
    assert sixth.hops[0].outcome == "breaker_open"
    assert guards.history.get(NOVA).success_rate < 0.5 and guards.history.get(GPT).calls == 6


def test_a_model_at_80_percent_of_its_rate_limit_is_skipped_for_the_next(
    guards: Guards, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guards.limits, "limits", lambda name: (5, 0) if name == NOVA else (1000, 0))
    for _ in range(4):  # 4 of 5 requests this minute: 80 %
        assert guards.limits.admit(NOVA).admitted
    client, stub = bedrock_client()
    http = Http(httpx.Response(200, json=chat_completion()))
    with stub:
        chained = run_chain(SPEC, [NOVA, GPT], PROMPT, guards=guards, resolve=resolver(client, http))

    assert [(h.model, h.outcome) for h in chained.hops] == [(NOVA, "rate_limited"), (GPT, "succeeded")]
    assert "80%" in chained.hops[0].reason


def test_a_success_records_tokens_against_the_tokens_per_minute(guards: Guards) -> None:
    http = Http(httpx.Response(200, json=chat_completion()))
    run_chain(SPEC, [GPT], PROMPT, guards=guards, resolve=resolver(None, http))
    requests, tokens = _counts(guards, GPT)
    assert requests == 1 and tokens == 2500


def _counts(guards: Guards, model: str) -> tuple[int, int]:
    values = guards.limits.redis.hmget(guards.limits.key(model), "requests", "tokens")
    return int(values[0]), int(values[1])


def test_a_redis_outage_degrades_to_calling_without_shared_state() -> None:
    dead = Guards.from_redis(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    http = Http(httpx.Response(200, json=chat_completion()))
    chained = run_chain(SPEC, [GPT], PROMPT, guards=dead, resolve=resolver(None, http))
    assert chained.run.model == GPT


def test_the_request_body_is_what_the_provider_api_expects() -> None:
    http = Http(httpx.Response(200, json=chat_completion()))
    run_chain(SPEC, [GPT], PROMPT, resolve=resolver(None, http))
    body = json.loads(http.requests[0].content)
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"][-1] == {"role": "user", "content": PROMPT}
    assert http.requests[0].headers["authorization"] == "Bearer test-key"
