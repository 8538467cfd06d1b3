"""Failed-authentication limits in the application: random API keys from one source reach 429 with
Retry-After, and while throttled even a valid credential from that source is refused (a guesser learns
nothing); guessing one key's secret from many sources throttles that key."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def _random_key() -> str:
    return f"tdk_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)[:43]}"


def test_150_random_api_keys_from_one_source_hit_429(secured: Any, user: str) -> None:
    source = f"198.51.100.{secrets.randbelow(250) + 1}"
    statuses = []
    for _ in range(150):
        response = secured.http("GET", "/v1/agents", {"X-Api-Key": _random_key()}, None, source_ip=source)
        statuses.append(int(response["statusCode"]))
    assert set(statuses[:100]) == {401}, statuses[:100]
    assert set(statuses[100:]) == {429}, statuses[100:]
    throttled = secured.http("GET", "/v1/agents", {"X-Api-Key": _random_key()}, None, source_ip=source)
    assert int(throttled["headers"]["Retry-After"]) >= 1
    assert json.loads(throttled["body"])["error"] == "RateLimited"
    # A valid token from the throttled source is refused too; from another source it works.
    valid = {"Authorization": f"Bearer {secured.token(user)}"}
    assert secured.http("GET", "/v1/agents", valid, None, source_ip=source)["statusCode"] == 429
    assert secured.http("GET", "/v1/agents", valid, None, source_ip="198.18.0.1")["statusCode"] == 200


def test_guessing_one_keys_secret_throttles_that_key(secured: Any) -> None:
    admin = {"Authorization": f"Bearer {secured.token('key-admin', ('admin',))}"}
    status, created = secured.api(
        "POST", "/v1/api-keys", {"name": "victim", "roles": ["viewer"]}, headers=admin
    )
    assert status == 201, created
    key_id, real = created["key_id"], created["api_key"]
    for attempt in range(10):  # each guess from its own source: only the key's own bucket fills
        guess = f"tdk_{key_id}_{secrets.token_urlsafe(32)[:43]}"
        response = secured.http(
            "GET", "/v1/agents", {"X-Api-Key": guess}, None, source_ip=f"192.0.2.{attempt + 1}"
        )
        assert response["statusCode"] == 401
    response = secured.http("GET", "/v1/agents", {"X-Api-Key": real}, None, source_ip="192.0.2.200")
    assert response["statusCode"] == 429 and int(response["headers"]["Retry-After"]) >= 1
    other = secured.http("GET", "/v1/agents", admin, None, source_ip="192.0.2.201")
    assert other["statusCode"] == 200
