"""Every model provider the platform can call, each one an Agno model class (never a client of our own).

A provider is named by the part before the first colon of a model name ("bedrock:amazon.nova-pro-v1:0",
"openai:gpt-4.1-mini"). Each maps to one row of Agno's provider registry (`agno.models.utils`), the Python SDK
that class needs (pinned in pyproject.toml), and the environment variable its credentials come from (Agno
reads them itself; deployed, they are injected from Secrets Manager into the function's environment).

`TDEV_<PROVIDER>_BASE_URL` (e.g. TDEV_OPENAI_BASE_URL) points a provider at another endpoint: a proxy, a
self-hosted server, or a local fake in tests.
"""

from __future__ import annotations

import importlib
import inspect
import os
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from tdev.errors import ConfigurationError, UnknownModelProviderError

if TYPE_CHECKING:
    from agno.models.base import Model


@dataclass(frozen=True)
class Provider:
    name: str  # our name, the prefix of a model name
    agno_key: str  # the row of agno.models.utils.MODEL_PROVIDER_CLASSES, "" for our own offline model
    sdk: str  # the distribution the Agno class imports ("" when only boto3/openai, always installed)
    credentials: str  # where the credentials come from
    kind: str  # "cloud" | "gateway" (routes to other vendors) | "self-hosted" | "local"
    openai_compatible: bool = False


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("offline", "", "", "none (deterministic, in process)", "local"),
        Provider("bedrock", "aws-bedrock", "boto3", "the AWS credential chain (IAM role)", "cloud"),
        Provider("anthropic", "anthropic", "anthropic", "ANTHROPIC_API_KEY", "cloud"),
        Provider("openai", "openai-chat", "openai", "OPENAI_API_KEY", "cloud", True),
        Provider("google", "google", "google-genai", "GOOGLE_API_KEY", "cloud"),
        Provider("mistral", "mistral", "mistralai", "MISTRAL_API_KEY", "cloud"),
        Provider("cohere", "cohere", "cohere", "CO_API_KEY", "cloud"),
        Provider("groq", "groq", "groq", "GROQ_API_KEY", "cloud"),
        Provider("ollama", "ollama", "ollama", "none (OLLAMA_HOST)", "self-hosted"),
        Provider("openrouter", "openrouter", "openai", "OPENROUTER_API_KEY", "gateway", True),
        Provider("together", "together", "openai", "TOGETHER_API_KEY", "cloud", True),
        Provider("deepseek", "deepseek", "openai", "DEEPSEEK_API_KEY", "cloud", True),
        Provider("xai", "xai", "openai", "XAI_API_KEY", "cloud", True),
        Provider("fireworks", "fireworks", "openai", "FIREWORKS_API_KEY", "cloud", True),
        Provider("perplexity", "perplexity", "openai", "PERPLEXITY_API_KEY", "cloud", True),
        Provider("deepinfra", "deepinfra", "openai", "DEEPINFRA_API_KEY", "cloud", True),
        Provider("nvidia", "nvidia", "openai", "NVIDIA_API_KEY", "cloud", True),
        Provider("nebius", "nebius", "openai", "NEBIUS_API_KEY", "cloud", True),
        Provider("sambanova", "sambanova", "openai", "SAMBANOVA_API_KEY", "cloud", True),
        Provider("dashscope", "dashscope", "openai", "DASHSCOPE_API_KEY", "cloud", True),
        Provider("moonshot", "moonshot", "openai", "MOONSHOT_API_KEY", "cloud", True),
        Provider("minimax", "minimax", "openai", "MINIMAX_API_KEY", "cloud", True),
        Provider(
            "azure-openai",
            "azure-openai",
            "openai",
            "AZURE_OPENAI_API_KEY + AZURE_OPENAI_ENDPOINT",
            "cloud",
            True,
        ),
        Provider(
            "cloudflare",
            "cloudflare",
            "openai",
            "CLOUDFLARE_API_TOKEN + CLOUDFLARE_ACCOUNT_ID",
            "cloud",
            True,
        ),
        Provider("lmstudio", "lmstudio", "openai", "none (local server)", "self-hosted", True),
        Provider("vllm", "vllm", "openai", "VLLM_BASE_URL (+ VLLM_API_KEY)", "self-hosted", True),
        Provider("llama-cpp", "llama-cpp", "openai", "none (local server)", "self-hosted", True),
    )
}
SUPPORTED_PROVIDERS = tuple(PROVIDERS)


def provider(name: str) -> Provider:
    """The provider called `name`; UnknownModelProviderError naming the supported ones otherwise."""
    found = PROVIDERS.get(name)
    if found is None:
        raise UnknownModelProviderError(
            f"unknown model provider {name!r}; supported providers: {', '.join(SUPPORTED_PROVIDERS)}",
            field="model",
        )
    return found


def agno_model_class(p: Provider) -> type[Model]:
    """The Agno class behind a provider, imported on first use (a cold start loads only what it calls)."""
    return _agno_model_class(p.name)


@cache
def _agno_model_class(name: str) -> type[Model]:
    """Looked up once per provider and container: an import_module per agent build was a third of the
    build's time (`tdev bench instantiation`). A failed import is not cached (no exception is kept)."""
    from agno.models.utils import MODEL_PROVIDER_CLASSES

    p = provider(name)

    module_path, class_name = MODEL_PROVIDER_CLASSES[p.agno_key]
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise ConfigurationError(
            f"provider {p.name!r} needs the {p.sdk!r} package, which is not installed: {exc}"
        ) from exc
    cls: type[Model] = getattr(module, class_name)
    return cls


def _accepts(cls: type, parameter: str) -> bool:
    fields = getattr(cls, "__dataclass_fields__", None)
    if fields is not None:
        return parameter in fields
    return parameter in inspect.signature(cls).parameters


def api_key_from_secrets(p: Provider) -> str | None:
    """Deployed, an API-key provider's key is the Secrets Manager secret the stack created for it, named in
    TDEV_PROVIDER_SECRETS; read through the platform's secrets accessor (tdev.secrets: Powertools
    Parameters, cached for an hour, every read audited). None when no secret is configured (locally, Agno
    reads the provider's variable, e.g. OPENAI_API_KEY, itself)."""
    from tdev.environment import provider_secrets

    secret = provider_secrets().get(p.name)
    if not secret:
        return None
    from tdev import secrets

    return secrets.read(secret, purpose=f"model provider {p.name}")


def build_model(provider_name: str, model_id: str, **options: Any) -> Model:
    """An Agno model of `provider_name` for `model_id`.

    `options` go to the Agno class when it accepts them (http_client, base_url, session, ...), so tests
    and the local runtime can hand a provider a stubbed transport without knowing its class.
    """
    p = provider(provider_name)
    cls = agno_model_class(p)
    base_url = os.environ.get(f"TDEV_{p.name.upper().replace('-', '_')}_BASE_URL")
    if base_url and "base_url" not in options:
        options["base_url"] = base_url
    if options.get("api_key") is None and _accepts(cls, "api_key"):
        options["api_key"] = api_key_from_secrets(p)
    accepted = {k: v for k, v in options.items() if v is not None and _accepts(cls, k)}
    return cls(id=model_id, **accepted)
