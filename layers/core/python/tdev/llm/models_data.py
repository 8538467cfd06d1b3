"""What each known model can do and costs: the router's candidates, `tdev models`, and the cost report.

PRICES ARE FROM MEMORY. They were written down on 2026-11-22 from what the providers' public price pages
said in mid-2025 (USD per 1,000 tokens, on-demand, standard tier, US regions); nobody checked them against
the live pages, which change often. Use them for relative routing and for estimates, never for billing.
`None` means no per-token price is published for that model here (self-hosted servers, free tiers).

Context windows are the provider's documented maximum input; capabilities are those the model offers
through the API (tools = function calling, vision = image input, json = a JSON output mode). Latency tiers are
coarse: "fast" (small models, typically < 1 s to first token), "standard", "slow" (large/reasoning models).
Rate limits (requests and tokens per minute) are conservative defaults for a new account; set the real
quotas with TDEV_LLM_LIMITS='{"provider:model": {"rpm": 100, "tpm": 400000}}'.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

from tdev.errors import ConfigurationError

PRICES_AS_OF = "2025-06 (from memory, written down 2026-11-22; not verified against the live price pages)"

TASK_TYPES = ("code", "reasoning", "analysis", "chat", "summarization", "creative", "translation", "general")
CAPABILITIES = ("tools", "vision", "json", "streaming")
LATENCY_TIERS = ("fast", "standard", "slow")
MULTILINGUAL = ("en", "de", "es", "fr", "it", "pt", "ja", "ko", "zh", "hi", "ar", "ru", "nl", "pl")


@dataclass(frozen=True)
class ModelInfo:
    name: str  # provider:model-id
    context_window: int
    input_per_1k: float | None
    output_per_1k: float | None
    capabilities: frozenset[str]
    latency_tier: str
    specialties: frozenset[str]
    languages: tuple[str, ...] = MULTILINGUAL
    rpm: int = 500
    tpm: int = 200_000
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def provider(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def model_id(self) -> str:
        return self.name.split(":", 1)[1]

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "model_id": self.model_id,
            "context_window": self.context_window,
            "price_per_1k_input_usd": self.input_per_1k,
            "price_per_1k_output_usd": self.output_per_1k,
            "capabilities": sorted(self.capabilities),
            "latency_tier": self.latency_tier,
            "specialties": sorted(self.specialties),
            "languages": list(self.languages),
            "rpm": limits_of(self.name)[0],
            "tpm": limits_of(self.name)[1],
            **({"notes": self.notes} if self.notes else {}),
        }


_ALL = frozenset({"tools", "vision", "json", "streaming"})
_TEXT = frozenset({"tools", "json", "streaming"})
_PLAIN = frozenset({"streaming"})


def _m(
    name: str,
    ctx: int,
    price_in: float | None,
    price_out: float | None,
    caps: frozenset[str],
    tier: str,
    specialties: str,
    **extra: object,
) -> ModelInfo:
    return ModelInfo(name, ctx, price_in, price_out, caps, tier, frozenset(specialties.split()), **extra)  # type: ignore[arg-type]


_EN = ("en",)
MODELS: tuple[ModelInfo, ...] = (
    _m(
        "offline:tdev-offline-1",
        200_000,
        0.0,
        0.0,
        _TEXT,
        "fast",
        "general code analysis",
        languages=_EN,
        rpm=1_000_000,
        tpm=1_000_000_000,
        notes="deterministic templates, no network: the default",
    ),
    # Amazon Bedrock (Converse API), US East
    _m("bedrock:amazon.nova-micro-v1:0", 128_000, 0.000035, 0.00014, _TEXT, "fast", "chat summarization"),
    _m(
        "bedrock:amazon.nova-lite-v1:0", 300_000, 0.00006, 0.00024, _ALL, "fast", "chat summarization general"
    ),
    _m("bedrock:amazon.nova-pro-v1:0", 300_000, 0.0008, 0.0032, _ALL, "standard", "general analysis code"),
    _m(
        "bedrock:amazon.nova-premier-v1:0", 1_000_000, 0.0025, 0.0125, _ALL, "slow", "reasoning analysis code"
    ),
    _m(
        "bedrock:amazon.titan-text-express-v1",
        8_000,
        0.0002,
        0.0006,
        _PLAIN,
        "fast",
        "summarization chat",
        languages=_EN,
    ),
    _m(
        "bedrock:anthropic.claude-3-haiku-20240307-v1:0",
        200_000,
        0.00025,
        0.00125,
        _ALL,
        "fast",
        "chat summarization",
    ),
    _m(
        "bedrock:anthropic.claude-3-5-haiku-20241022-v1:0",
        200_000,
        0.0008,
        0.004,
        _TEXT,
        "fast",
        "code chat summarization",
    ),
    _m(
        "bedrock:anthropic.claude-3-5-sonnet-20241022-v2:0",
        200_000,
        0.003,
        0.015,
        _ALL,
        "standard",
        "code analysis reasoning general",
    ),
    _m(
        "bedrock:anthropic.claude-3-7-sonnet-20250219-v1:0",
        200_000,
        0.003,
        0.015,
        _ALL,
        "standard",
        "code analysis reasoning general",
    ),
    _m(
        "bedrock:anthropic.claude-sonnet-4-20250514-v1:0",
        200_000,
        0.003,
        0.015,
        _ALL,
        "standard",
        "code analysis reasoning general",
        rpm=200,
        tpm=200_000,
    ),
    _m(
        "bedrock:anthropic.claude-opus-4-20250514-v1:0",
        200_000,
        0.015,
        0.075,
        _ALL,
        "slow",
        "reasoning code analysis",
        rpm=50,
        tpm=100_000,
    ),
    _m("bedrock:meta.llama3-1-8b-instruct-v1:0", 128_000, 0.00022, 0.00022, _TEXT, "fast", "chat"),
    _m(
        "bedrock:meta.llama3-1-70b-instruct-v1:0",
        128_000,
        0.00072,
        0.00072,
        _TEXT,
        "standard",
        "general chat code",
    ),
    _m("bedrock:mistral.mistral-small-2402-v1:0", 32_000, 0.001, 0.003, _TEXT, "fast", "chat translation"),
    _m(
        "bedrock:mistral.mistral-large-2402-v1:0",
        32_000,
        0.004,
        0.012,
        _TEXT,
        "standard",
        "general translation reasoning",
    ),
    _m(
        "bedrock:cohere.command-r-plus-v1:0",
        128_000,
        0.003,
        0.015,
        _TEXT,
        "standard",
        "summarization analysis",
    ),
    _m("bedrock:ai21.jamba-1-5-mini-v1:0", 256_000, 0.0002, 0.0004, _TEXT, "fast", "summarization"),
    _m("bedrock:deepseek.r1-v1:0", 128_000, 0.00135, 0.0054, _PLAIN, "slow", "reasoning code", languages=_EN),
    # Anthropic
    _m(
        "anthropic:claude-3-5-haiku-20241022",
        200_000,
        0.0008,
        0.004,
        _TEXT,
        "fast",
        "code chat summarization",
    ),
    _m(
        "anthropic:claude-3-7-sonnet-20250219",
        200_000,
        0.003,
        0.015,
        _ALL,
        "standard",
        "code analysis reasoning general",
    ),
    _m(
        "anthropic:claude-sonnet-4-20250514",
        200_000,
        0.003,
        0.015,
        _ALL,
        "standard",
        "code analysis reasoning general",
    ),
    _m(
        "anthropic:claude-opus-4-20250514",
        200_000,
        0.015,
        0.075,
        _ALL,
        "slow",
        "reasoning code analysis",
        rpm=50,
    ),
    # OpenAI
    _m("openai:gpt-4o", 128_000, 0.0025, 0.01, _ALL, "standard", "general analysis code creative"),
    _m("openai:gpt-4o-mini", 128_000, 0.00015, 0.0006, _ALL, "fast", "chat summarization general"),
    _m("openai:gpt-4.1", 1_000_000, 0.002, 0.008, _ALL, "standard", "code analysis general"),
    _m("openai:gpt-4.1-mini", 1_000_000, 0.0004, 0.0016, _ALL, "fast", "code chat general"),
    _m("openai:gpt-4.1-nano", 1_000_000, 0.0001, 0.0004, _ALL, "fast", "chat summarization"),
    _m("openai:o3-mini", 200_000, 0.0011, 0.0044, _TEXT, "slow", "reasoning code"),
    _m("openai:o4-mini", 200_000, 0.0011, 0.0044, _ALL, "slow", "reasoning code analysis"),
    # Google
    _m("google:gemini-2.0-flash", 1_000_000, 0.0001, 0.0004, _ALL, "fast", "chat summarization general"),
    _m("google:gemini-2.5-flash", 1_000_000, 0.0003, 0.0025, _ALL, "fast", "general code analysis"),
    _m("google:gemini-2.5-pro", 1_000_000, 0.00125, 0.01, _ALL, "slow", "reasoning code analysis"),
    # Mistral
    _m(
        "mistral:mistral-large-latest",
        128_000,
        0.002,
        0.006,
        _TEXT,
        "standard",
        "general translation reasoning",
    ),
    _m("mistral:mistral-small-latest", 128_000, 0.0001, 0.0003, _TEXT, "fast", "chat translation"),
    _m("mistral:codestral-latest", 256_000, 0.0003, 0.0009, _TEXT, "fast", "code"),
    # Cohere
    _m(
        "cohere:command-a-03-2025", 256_000, 0.0025, 0.01, _TEXT, "standard", "analysis summarization general"
    ),
    _m("cohere:command-r-plus-08-2024", 128_000, 0.0025, 0.01, _TEXT, "standard", "summarization analysis"),
    _m("cohere:command-r-08-2024", 128_000, 0.00015, 0.0006, _TEXT, "fast", "summarization chat"),
    # Groq
    _m(
        "groq:llama-3.3-70b-versatile",
        128_000,
        0.00059,
        0.00079,
        _TEXT,
        "fast",
        "general chat code",
        rpm=30,
        tpm=6_000,
    ),
    _m(
        "groq:llama-3.1-8b-instant",
        128_000,
        0.00005,
        0.00008,
        _TEXT,
        "fast",
        "chat summarization",
        rpm=30,
        tpm=6_000,
    ),
    # Ollama (self-hosted: no per-token price)
    _m(
        "ollama:llama3.1",
        128_000,
        None,
        None,
        _TEXT,
        "standard",
        "chat general",
        languages=_EN,
        notes="self-hosted: cost is your compute",
    ),
    _m(
        "ollama:qwen2.5-coder",
        32_000,
        None,
        None,
        _TEXT,
        "standard",
        "code",
        languages=_EN,
        notes="self-hosted: cost is your compute",
    ),
    # OpenRouter (a gateway: the price is the routed vendor's)
    _m("openrouter:openai/gpt-4o-mini", 128_000, 0.00015, 0.0006, _ALL, "fast", "chat general"),
    _m("openrouter:anthropic/claude-3.5-sonnet", 200_000, 0.003, 0.015, _ALL, "standard", "code analysis"),
    _m(
        "openrouter:meta-llama/llama-3.3-70b-instruct", 128_000, 0.00013, 0.0004, _TEXT, "standard", "general"
    ),
    # Together AI
    _m(
        "together:meta-llama/Llama-3.3-70B-Instruct-Turbo",
        128_000,
        0.00088,
        0.00088,
        _TEXT,
        "fast",
        "general chat code",
    ),
    _m("together:deepseek-ai/DeepSeek-V3", 128_000, 0.00125, 0.00125, _TEXT, "standard", "code reasoning"),
    _m("together:Qwen/Qwen2.5-Coder-32B-Instruct", 32_000, 0.0008, 0.0008, _TEXT, "fast", "code"),
    # DeepSeek
    _m("deepseek:deepseek-chat", 64_000, 0.00027, 0.0011, _TEXT, "standard", "code general chat"),
    _m("deepseek:deepseek-reasoner", 64_000, 0.00055, 0.00219, _PLAIN, "slow", "reasoning code"),
    # xAI
    _m("xai:grok-3", 131_000, 0.003, 0.015, _TEXT, "standard", "reasoning general"),
    _m("xai:grok-3-mini", 131_000, 0.0003, 0.0005, _TEXT, "fast", "reasoning chat"),
    # Fireworks
    _m(
        "fireworks:accounts/fireworks/models/llama-v3p1-70b-instruct",
        128_000,
        0.0009,
        0.0009,
        _TEXT,
        "fast",
        "general chat",
    ),
    _m(
        "fireworks:accounts/fireworks/models/qwen2p5-coder-32b-instruct",
        32_000,
        0.0009,
        0.0009,
        _TEXT,
        "fast",
        "code",
    ),
    # Perplexity
    _m("perplexity:sonar", 127_000, 0.001, 0.001, _PLAIN, "fast", "analysis summarization"),
    _m("perplexity:sonar-pro", 200_000, 0.003, 0.015, _PLAIN, "standard", "analysis summarization"),
    # DeepInfra
    _m(
        "deepinfra:meta-llama/Meta-Llama-3.1-70B-Instruct",
        128_000,
        0.00023,
        0.0004,
        _TEXT,
        "standard",
        "general chat",
    ),
    _m("deepinfra:Qwen/Qwen2.5-72B-Instruct", 32_000, 0.00023, 0.0004, _TEXT, "standard", "general code"),
    # NVIDIA NIM (API catalog: credits, no published per-token price)
    _m(
        "nvidia:meta/llama-3.1-70b-instruct",
        128_000,
        None,
        None,
        _TEXT,
        "standard",
        "general chat",
        notes="NIM API catalog credits; no per-token price published",
    ),
    # Nebius AI Studio
    _m(
        "nebius:meta-llama/Meta-Llama-3.1-70B-Instruct",
        128_000,
        0.00013,
        0.0004,
        _TEXT,
        "standard",
        "general",
    ),
    # SambaNova Cloud
    _m("sambanova:Meta-Llama-3.1-70B-Instruct", 128_000, 0.0006, 0.0012, _TEXT, "fast", "general chat"),
    # Alibaba DashScope (Qwen), international
    _m("dashscope:qwen-max", 32_000, 0.0016, 0.0064, _TEXT, "standard", "reasoning general translation"),
    _m("dashscope:qwen-plus", 131_000, 0.0004, 0.0012, _TEXT, "standard", "general translation"),
    _m("dashscope:qwen-turbo", 1_000_000, 0.00005, 0.0002, _TEXT, "fast", "chat summarization translation"),
    # Moonshot
    _m("moonshot:kimi-k2-0711-preview", 128_000, 0.0006, 0.0025, _TEXT, "standard", "code general"),
    # MiniMax
    _m("minimax:MiniMax-Text-01", 1_000_000, 0.0002, 0.0011, _TEXT, "standard", "summarization general"),
    # Azure OpenAI (the model id is your deployment name; priced as the deployed model)
    _m(
        "azure-openai:gpt-4o",
        128_000,
        0.0025,
        0.01,
        _ALL,
        "standard",
        "general analysis code",
        notes="model id = deployment name",
    ),
    _m(
        "azure-openai:gpt-4o-mini",
        128_000,
        0.000165,
        0.00066,
        _ALL,
        "fast",
        "chat summarization",
        notes="model id = deployment name",
    ),
    # Cloudflare Workers AI
    _m("cloudflare:@cf/meta/llama-3.1-8b-instruct", 128_000, 0.000282, 0.000827, _TEXT, "fast", "chat"),
    # Self-hosted OpenAI-compatible servers
    _m(
        "lmstudio:qwen2.5-7b-instruct",
        32_000,
        None,
        None,
        _TEXT,
        "standard",
        "chat general",
        languages=_EN,
        notes="self-hosted: cost is your compute",
    ),
    _m(
        "vllm:meta-llama/Llama-3.1-8B-Instruct",
        128_000,
        None,
        None,
        _TEXT,
        "fast",
        "chat general",
        languages=_EN,
        notes="self-hosted: cost is your compute",
    ),
    _m(
        "llama-cpp:gpt-oss-20b",
        128_000,
        None,
        None,
        _TEXT,
        "standard",
        "reasoning code",
        languages=_EN,
        notes="self-hosted: cost is your compute",
    ),
)
BY_NAME: dict[str, ModelInfo] = {m.name: m for m in MODELS}


def info(name: str) -> ModelInfo | None:
    return BY_NAME.get(name)


@lru_cache(maxsize=1)
def _limit_overrides() -> dict[str, dict[str, int]]:
    raw = os.environ.get("TDEV_LLM_LIMITS", "").strip()
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
        return {str(k): {"rpm": int(v.get("rpm", 0)), "tpm": int(v.get("tpm", 0))} for k, v in parsed.items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise ConfigurationError(
            'TDEV_LLM_LIMITS must be JSON like {"provider:model": {"rpm": 100, "tpm": 400000}}'
        ) from exc


DEFAULT_RPM, DEFAULT_TPM = 500, 200_000


def limits_of(name: str) -> tuple[int, int]:
    """(requests per minute, tokens per minute) configured for a model; 0 means "no limit of that kind"."""
    override = _limit_overrides().get(name)
    model = BY_NAME.get(name)
    rpm, tpm = (model.rpm, model.tpm) if model else (DEFAULT_RPM, DEFAULT_TPM)
    if override:
        rpm = override["rpm"] if override["rpm"] else rpm
        tpm = override["tpm"] if override["tpm"] else tpm
    return rpm, tpm


def reset_limits() -> None:
    _limit_overrides.cache_clear()
