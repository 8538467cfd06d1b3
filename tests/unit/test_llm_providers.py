"""The provider registry: ≥ 25 providers, each an Agno model class; `tdev models --json`; prices and costs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tdev.agents.chain import run_chain
from tdev.errors import UnknownModelProviderError
from tdev.llm.catalog import cost_usd, price_known, resolve_model
from tdev.llm.models_data import CAPABILITIES, LATENCY_TIERS, MODELS, TASK_TYPES, limits_of, reset_limits
from tdev.llm.providers import PROVIDERS, agno_model_class
from tdev.models import AgentSpec
from tdev_cli.main import main

SPEC = AgentSpec(name="CodeAgent", role="Writes code.", description="d", capabilities=["code"])


def test_tdev_models_json_lists_at_least_25_providers_with_models_and_prices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)

    assert len(data["providers"]) >= 25
    assert "from memory" in data["prices_as_of"]
    for provider in data["providers"]:
        assert provider["sdk_installed"], provider["name"]
        assert provider["models"], provider["name"]
        for model in provider["models"]:
            assert model["name"].startswith(provider["name"] + ":")
            assert model["context_window"] >= 8_000
            assert set(model["capabilities"]) <= set(CAPABILITIES)
            assert model["latency_tier"] in LATENCY_TIERS
            assert set(model["specialties"]) <= set(TASK_TYPES)
            assert {"price_per_1k_input_usd", "price_per_1k_output_usd", "rpm", "tpm"} <= set(model)
    names = {p["name"] for p in data["providers"]}
    assert {"bedrock", "anthropic", "openai", "google", "mistral", "cohere", "groq", "ollama", "openrouter",
            "together"} <= names  # fmt: skip


def test_tdev_models_for_an_unknown_provider_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--provider", "nosuch"]) == 2


@pytest.mark.parametrize("name", [m.name for m in MODELS if m.provider != "offline"])
def test_every_listed_model_resolves_to_its_providers_agno_class(name: str) -> None:
    model = resolve_model(name)
    provider, model_id = name.split(":", 1)
    assert isinstance(model, agno_model_class(PROVIDERS[provider]))
    assert model.id.endswith(model_id)  # Cloudflare's class prefixes its route ("workers-ai/")


def test_a_base_url_override_points_a_provider_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDEV_TOGETHER_BASE_URL", "http://127.0.0.1:9/v1")
    assert resolve_model("together:any-model").base_url == "http://127.0.0.1:9/v1"  # type: ignore[attr-defined]


def test_an_unknown_provider_lists_the_supported_ones() -> None:
    with pytest.raises(UnknownModelProviderError) as raised:
        resolve_model("nosuch:model")
    assert "anthropic" in str(raised.value) and raised.value.field == "model"


def test_anthropic_goes_through_the_messages_api() -> None:
    httpx2 = pytest.importorskip("httpx2")
    requests: list[Any] = []

    def handler(request: Any) -> Any:
        requests.append(request)
        return httpx2.Response(
            200,
            json={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-20250514",
                "content": [{"type": "text", "text": "def add(a, b): return a + b"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 1200, "output_tokens": 300},
            },
        )

    name = "anthropic:claude-sonnet-4-20250514"

    def resolve(model_name: str) -> Any:
        # The Anthropic SDK 2.x runs on httpx2 (httpx's successor, same transport API)
        client = httpx2.Client(transport=httpx2.MockTransport(handler))
        return resolve_model(model_name, http_client=client, api_key="test-key")

    chained = run_chain(SPEC, [name], "Write add()", resolve=resolve)

    assert requests[0].url.path == "/v1/messages"
    assert requests[0].headers["authorization"] == "Bearer test-key"
    assert "def add" in chained.run.output
    assert chained.run.usage.cost_usd == pytest.approx(1.2 * 0.003 + 0.3 * 0.015)


# ------------------------------------------------------------------------------------------ costs
@pytest.mark.parametrize(
    ("name", "tokens_in", "tokens_out", "expected"),
    [
        ("openai:gpt-4o", 1500, 2000, 1.5 * 0.0025 + 2 * 0.01),
        ("anthropic:claude-opus-4-20250514", 10_000, 1_000, 10 * 0.015 + 1 * 0.075),
        ("google:gemini-2.0-flash", 100_000, 0, 100 * 0.0001),
        ("bedrock:amazon.nova-lite-v1:0", 1000, 500, 0.00006 + 0.5 * 0.00024),
        ("bedrock:us.amazon.nova-lite-v1:0", 1000, 500, 0.00006 + 0.5 * 0.00024),  # inference profile
        ("groq:llama-3.1-8b-instant", 1_000_000, 1_000_000, 1000 * 0.00005 + 1000 * 0.00008),
    ],
)
def test_cost_arithmetic_against_the_price_table(
    name: str, tokens_in: int, tokens_out: int, expected: float
) -> None:
    assert cost_usd(name, tokens_in, tokens_out) == pytest.approx(expected)
    assert price_known(name)


def test_self_hosted_models_have_no_price_and_say_so() -> None:
    assert not price_known("vllm:meta-llama/Llama-3.1-8B-Instruct")
    assert cost_usd("vllm:meta-llama/Llama-3.1-8B-Instruct", 1000, 1000) == 0.0


def test_rate_limits_are_configurable_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    assert limits_of("groq:llama-3.1-8b-instant") == (30, 6_000)
    monkeypatch.setenv("TDEV_LLM_LIMITS", json.dumps({"groq:llama-3.1-8b-instant": {"rpm": 1000}}))
    reset_limits()
    try:
        assert limits_of("groq:llama-3.1-8b-instant") == (1000, 6_000)
    finally:
        monkeypatch.delenv("TDEV_LLM_LIMITS")
        reset_limits()
