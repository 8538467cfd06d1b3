"""Failed-authentication limits in the application (the WAF's rate rule is per IP and deployed only):
after N failed authentications from one source IP in a window, or against one API-key id, every request
from that source or for that key is answered 429 with Retry-After, valid or not, until the window has room
again. Checked before the credentials are, so a guesser learns nothing while throttled.

    Redis   tdev:ratelimit:authfail:source:<ip>    tdev:ratelimit:authfail:key:<key id>   (token buckets)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from tdev.errors import AuthenticationError, RateLimitError
from tdev.observability import logger
from tdev.security.ratelimit import Limit, RateLimiter

T = TypeVar("T")
KEY_ID = re.compile(r"^tdk_([0-9a-f]{16})_")


class AuthenticationThrottled(RateLimitError):
    """Too many failed authentications from this source or for this key."""


def buckets(source_ip: str | None, api_key: str | None) -> list[tuple[str, str]]:
    """(kind, bucket) pairs of a request: its source IP (when it is one) and its API key's id (when any)."""
    found: list[tuple[str, str]] = []
    if source_ip:
        try:
            found.append(("source", f"authfail:source:{ipaddress.ip_address(source_ip.strip())}"))
        except ValueError:
            found.append(("source", "authfail:source:invalid"))
    match = KEY_ID.match(api_key.strip()) if api_key else None
    if match:
        found.append(("key", f"authfail:key:{match.group(1)}"))
    return found


class FailedAuthentications:
    def __init__(self, limiter: RateLimiter, *, per_source: Limit, per_key: Limit) -> None:
        self.limiter, self.limits = limiter, {"source": per_source, "key": per_key}

    def guard(self, source_ip: str | None, api_key: str | None, authenticate: Callable[[], T]) -> T:
        """`authenticate()` unless this source or key is throttled; failures are counted."""
        pairs = buckets(source_ip, api_key)
        for kind, bucket in pairs:
            retry_after = self._safely(partial(self.limiter.full, bucket, self.limits[kind]), 0)
            if retry_after:
                what = "source" if kind == "source" else "API key"
                raise AuthenticationThrottled(
                    f"too many failed authentications from this {what}; retry after {retry_after} s",
                    retry_after=retry_after,
                )
        try:
            return authenticate()
        except AuthenticationError:
            for kind, bucket in pairs:
                outcome = self._safely(partial(self.limiter.hit, bucket, self.limits[kind]), None)
                if outcome is not None and not outcome.allowed:
                    logger.warning(
                        "failed-authentication limit reached",
                        extra={"security_event": "authentication_throttled", "limit": kind},
                    )
            raise

    @staticmethod
    def _safely(step: Callable[[], T], otherwise: T) -> T:
        """Redis unreachable: authentication goes on without this limit (the WAF's still applies)."""
        try:
            return step()
        except Exception as exc:
            logger.warning("failed-authentication limit unavailable", extra={"error": type(exc).__name__})
            return otherwise
