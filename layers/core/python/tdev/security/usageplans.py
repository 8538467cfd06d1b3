"""API Gateway usage plans for the callers the Lambda authorizer identifies.

The REST API reads API keys from the authorizer (`apiKeySource: AUTHORIZER`): every authenticated route
requires a key, and the authorizer names it in `usageIdentifierKey`. API Gateway then throttles and meters
each key against its usage plan before the request reaches the function:

- machine clients: every key created through `POST /v1/api-keys` gets a twin API Gateway key in the
  `machine-clients` plan (throttle 1 request/s with a burst, a daily quota). The twin's value only names
  the caller to API Gateway: clients never see it, and it authenticates nothing (the authorizer does that).
- interactive users (JWTs): one shared key in the `interactive` plan, a ceiling for all of them together;
  per-user limits are the application limiter's (tdev.security.ratelimit).

Outside AWS (tdev serve, tests without the settings) there is no gateway and nothing is registered.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from typing import Any

from tdev import aws
from tdev.errors import ConfigurationError

ENV_TAG = "t-developer-env"  # the API function's IAM policy only changes keys carrying its environment's tag


@dataclass(frozen=True)
class GatewayKey:
    key_id: str  # API Gateway's id of the twin key
    value: str  # what the authorizer returns as usageIdentifierKey


class UsagePlans:
    """Registers machine keys in the machine plan and names the interactive key, by their deployed names."""

    def __init__(self, machine_plan_name: str, interactive_key_id: str | None, environment: str) -> None:
        self.machine_plan_name = machine_plan_name
        self.interactive_key_id = interactive_key_id
        self.environment = environment
        self._plan_id: str | None = None
        self._interactive_value: str | None = None

    @staticmethod
    def _client() -> Any:
        return aws.client("apigateway")

    def machine_plan_id(self) -> str:
        """The id of the plan named `machine_plan_name` (looked up once: the stack cannot pass the id in
        without a dependency cycle, since the plan depends on the stage, which depends on this function)."""
        if self._plan_id is None:
            paginator = self._client().get_paginator("get_usage_plans")
            for page in paginator.paginate():
                for plan in page.get("items", []):
                    if plan.get("name") == self.machine_plan_name:
                        self._plan_id = str(plan["id"])
                        break
                if self._plan_id:
                    break
            if self._plan_id is None:
                raise ConfigurationError(f"no API Gateway usage plan named {self.machine_plan_name}")
        return self._plan_id

    def register(self, key_id: str) -> GatewayKey:
        """A new enabled API Gateway key for our key `key_id`, attached to the machine plan. A key that
        cannot be attached is deleted again, so no unmetered twin is left behind."""
        client = self._client()
        created = client.create_api_key(
            name=f"tdk-{key_id}",
            description=f"T-Developer API key {key_id} (metering only; authentication is the authorizer's)",
            enabled=True,
            value=secrets.token_urlsafe(30),
            tags={ENV_TAG: self.environment},
        )
        try:
            client.create_usage_plan_key(
                usagePlanId=self.machine_plan_id(), keyId=created["id"], keyType="API_KEY"
            )
        except Exception:
            client.delete_api_key(apiKey=created["id"])
            raise
        return GatewayKey(key_id=str(created["id"]), value=str(created["value"]))

    def disable(self, gateway_key_id: str) -> None:
        """Stop metering a revoked key (the authorizer already refuses it)."""
        self._client().update_api_key(
            apiKey=gateway_key_id, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
        )

    def delete(self, gateway_key_id: str) -> None:
        """Detach the twin from the machine plan, then delete it (a registration being undone)."""
        client = self._client()
        with contextlib.suppress(client.exceptions.NotFoundException):  # never attached: nothing to detach
            client.delete_usage_plan_key(usagePlanId=self.machine_plan_id(), keyId=gateway_key_id)
        client.delete_api_key(apiKey=gateway_key_id)

    def interactive_value(self) -> str | None:
        """The shared key of the interactive plan (read once per container), or None if there is none."""
        if self.interactive_key_id is None:
            return None
        if self._interactive_value is None:
            key = self._client().get_api_key(apiKey=self.interactive_key_id, includeValue=True)
            self._interactive_value = str(key["value"])
        return self._interactive_value
