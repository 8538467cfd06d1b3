"""The model catalogue as the API (`GET /v1/models`) and the CLI (`tdev models --json`) show it."""

from __future__ import annotations

import importlib.util
from typing import Any


def catalog(provider: str | None = None) -> dict[str, Any]:
    """Every provider with its models, as `tdev models --json` prints it."""
    from tdev.llm.models_data import MODELS, PRICES_AS_OF
    from tdev.llm.providers import PROVIDERS

    providers = []
    for p in PROVIDERS.values():
        if provider and p.name != provider:
            continue
        agno_class = "tdev.llm.offline.OfflineModel"
        if p.agno_key:
            from agno.models.utils import MODEL_PROVIDER_CLASSES

            module, cls = MODEL_PROVIDER_CLASSES[p.agno_key]
            agno_class = f"{module}.{cls}"
        providers.append(
            {
                "name": p.name,
                "agno_class": agno_class,
                "sdk": p.sdk or "none",
                "sdk_installed": not p.sdk or importlib.util.find_spec(_module_of(p.sdk)) is not None,
                "credentials": p.credentials,
                "kind": p.kind,
                "openai_compatible": p.openai_compatible,
                "models": [m.as_dict() for m in MODELS if m.provider == p.name],
            }
        )
    return {"prices_as_of": PRICES_AS_OF, "price_unit": "USD per 1,000 tokens", "providers": providers}


def _module_of(distribution: str) -> str:
    return {"google-genai": "google.genai", "mistralai": "mistralai"}.get(distribution, distribution)
