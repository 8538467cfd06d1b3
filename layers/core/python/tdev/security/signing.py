"""HMAC-SHA256 request signing for machine-to-machine calls.

The string to sign is `METHOD \\n PATH \\n TIMESTAMP \\n NONCE \\n hex(SHA-256(body))`; the signature is
hex(HMAC-SHA256(secret, string)). Headers: X-Tdev-Timestamp (epoch seconds), X-Tdev-Nonce (16-128 chars),
X-Tdev-Signature. The timestamp must be within ±300 s, the nonce is remembered in Redis for the window
(SET NX) so the same signed request cannot be replayed, and signatures are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from typing import Any

from tdev import cache
from tdev.errors import AuthenticationError

WINDOW_SECONDS = 300
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")
TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER = "x-tdev-timestamp", "x-tdev-nonce", "x-tdev-signature"


def string_to_sign(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return "\n".join([method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest()]).encode()


def sign(
    secret: str, method: str, path: str, body: bytes, *, timestamp: int | None = None, nonce: str
) -> dict[str, str]:
    """The headers that sign one request (what a client library does)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(secret.encode(), string_to_sign(method, path, stamp, nonce, body), hashlib.sha256)
    return {"X-Tdev-Timestamp": stamp, "X-Tdev-Nonce": nonce, "X-Tdev-Signature": signature.hexdigest()}


class SignatureVerifier:
    def __init__(self, redis: Any = None, *, window_seconds: int = WINDOW_SECONDS) -> None:
        self._redis, self.window = redis, window_seconds

    @property
    def redis(self) -> Any:
        return self._redis if self._redis is not None else cache.redis_client()

    def verify(
        self, secret: str, method: str, path: str, headers: Mapping[str, str], body: bytes, *, key_id: str
    ) -> None:
        lower = {k.lower(): v for k, v in headers.items()}
        timestamp, nonce, signature = (
            lower.get(h) for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)
        )
        if not timestamp or not nonce or not signature:
            raise AuthenticationError(
                "this API key requires signed requests (X-Tdev-Timestamp, -Nonce, -Signature)"
            )
        # ASCII digits only: str.isdigit() also accepts superscripts and other scripts' digits.
        if not TIMESTAMP_PATTERN.fullmatch(timestamp):
            raise AuthenticationError(
                "request timestamp must be epoch seconds in ASCII digits", field="X-Tdev-Timestamp"
            )
        if abs(int(time.time()) - int(timestamp)) > self.window:
            raise AuthenticationError(
                f"request timestamp is outside ±{self.window} s", field="X-Tdev-Timestamp"
            )
        if not NONCE_PATTERN.fullmatch(nonce):
            raise AuthenticationError("nonce must be 16-128 characters [A-Za-z0-9_-]", field="X-Tdev-Nonce")
        expected = hmac.new(
            secret.encode(), string_to_sign(method, path, timestamp, nonce, body), hashlib.sha256
        )
        if not hmac.compare_digest(expected.hexdigest(), signature.strip().lower()):
            raise AuthenticationError("request signature does not match", field="X-Tdev-Signature")
        # Remember the nonce for the whole window (both sides of it): a replay within it is refused.
        if not self.redis.set(f"tdev:nonce:{key_id}:{nonce}", "1", nx=True, ex=2 * self.window):
            raise AuthenticationError("nonce already used (replayed request)", field="X-Tdev-Nonce")
