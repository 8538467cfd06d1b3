"""Streaming through the layer: Bedrock ConverseStream (botocore Stubber) and OpenAI-style SSE (httpx)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import httpx
import pytest
from botocore.stub import Stubber

from tdev.cache import connect
from tdev.errors import AgentError, TransientError
from tdev.llm.catalog import cost_usd, resolve_model
from tdev.llm.fallback import Guards, StreamResult, stream_chain

NOVA = "bedrock:amazon.nova-lite-v1:0"
GPT = "openai:gpt-4o-mini"


def stubbed_bedrock(*responses: list[dict[str, Any]] | str) -> tuple[Any, Stubber]:
    """A Bedrock client whose converse_stream answers these event lists (or raises these error codes).

    The Stubber validates a response against the API's shape before queueing it, and an event stream is
    no dict; so an empty stream is queued and filled with the events afterwards (the Stubber keeps it).
    """
    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    stub = Stubber(client)
    for response in responses:
        if isinstance(response, str):
            stub.add_client_error("converse_stream", service_error_code=response, http_status_code=429)
            continue
        queued: dict[str, Any] = {"stream": {}}
        stub.add_response("converse_stream", queued)
        queued["stream"] = response
    return client, stub


def converse_events(*pieces: str, usage: tuple[int, int] = (40, 6)) -> list[dict[str, Any]]:
    return [
        {"messageStart": {"role": "assistant"}},
        *({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": p}}} for p in pieces),
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {
            "metadata": {
                "usage": {"inputTokens": usage[0], "outputTokens": usage[1], "totalTokens": sum(usage)},
                "metrics": {"latencyMs": 5},
            }
        },
    ]


def sse(*pieces: str, usage: tuple[int, int] = (30, 4)) -> httpx.Response:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta or finish else []
        body = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-mini"}
        return "data: " + json.dumps({**body, "choices": choices, **extra}) + "\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": p}) for p in pieces]
    events.append(chunk({}, "stop"))
    usage_body = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    events.append(chunk({}, None, usage=usage_body))
    events.append("data: [DONE]\n\n")
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content="".join(events).encode()
    )


def resolver(bedrock: Any, responses: list[httpx.Response]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content)["stream"] is True
        return responses.pop(0)

    def resolve(name: str) -> Any:
        if name.startswith("bedrock:"):
            model = resolve_model(name)
            model.client = bedrock
            return model
        client = httpx.Client(transport=httpx.MockTransport(handler))
        return resolve_model(name, http_client=client, api_key="k", max_retries=0)

    return resolve


def test_bedrock_converse_stream_is_streamed_piece_by_piece_with_usage_and_cost() -> None:
    client, stub = stubbed_bedrock(converse_events("Hello ", "from ", "Bedrock"))
    result = StreamResult()
    with stub:
        pieces = list(stream_chain([NOVA], "Say hello", resolve=resolver(client, []), result=result))

    assert pieces == ["Hello ", "from ", "Bedrock"]
    assert result.model == NOVA and result.text == "Hello from Bedrock"
    assert (result.input_tokens, result.output_tokens) == (40, 6)
    assert result.cost_usd == pytest.approx(cost_usd(NOVA, 40, 6))


def test_an_openai_compatible_sse_stream_is_streamed_with_usage() -> None:
    result = StreamResult()
    pieces = list(
        stream_chain([GPT], "Say hello", resolve=resolver(None, [sse("Hi", " there")]), result=result)
    )

    assert pieces == ["Hi", " there"]
    assert (result.model, result.input_tokens, result.output_tokens) == (GPT, 30, 4)
    assert result.cost_usd == pytest.approx(cost_usd(GPT, 30, 4))


def test_a_stream_that_is_throttled_before_its_first_piece_falls_back(redis_url: str) -> None:
    guards = Guards.from_redis(connect(redis_url, decode_responses=True))
    client, stub = stubbed_bedrock("ThrottlingException")
    result = StreamResult()
    with stub:
        text = "".join(
            stream_chain(
                [NOVA, GPT],
                "Say hello",
                guards=guards,
                resolve=resolver(client, [sse("fallback")]),
                result=result,
            )
        )

    assert text == "fallback" and result.model == GPT
    assert [(h.model, h.outcome) for h in result.hops] == [(NOVA, "transient"), (GPT, "succeeded")]
    assert guards.history.get(GPT).calls == 1


def test_a_permanent_stream_error_surfaces() -> None:
    bad = httpx.Response(
        401, json={"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}
    )
    with pytest.raises(AgentError) as raised:
        list(stream_chain([GPT, NOVA], "Say hello", resolve=resolver(None, [bad])))
    assert not isinstance(raised.value, TransientError)


def test_a_stream_that_fails_midway_does_not_splice_in_another_model() -> None:
    events = converse_events("Hello ")
    client, stub = stubbed_bedrock(events)

    class Broken(list[dict[str, Any]]):
        def __iter__(self) -> Any:
            yield events[0]
            yield events[1]
            raise ConnectionResetError("connection reset by peer")

    stub._queue[0]["response"][1]["stream"] = Broken(events)  # the queued response, see stubbed_bedrock
    received: list[str] = []
    with stub, pytest.raises(TransientError, match="streaming from"):
        for piece in stream_chain([NOVA, GPT], "Say hello", resolve=resolver(client, [])):
            received.append(piece)
    assert received == ["Hello "]
