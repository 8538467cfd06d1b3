"""The platform's own secrets, read through one accessor: cached for an hour, every read audited.

Secrets Manager holds what this platform owns: the enabled model providers' API keys
(`<prefix>/providers/<name>`, tdev.llm.providers) and the API signing secret (`<prefix>/platform/api-signing`,
rotated by `functions/rotate_secret`, used by `tdev.data.store` to sign the cursors the API hands out:
the audit trail's pages, `GET /v1/audit/{principal}`'s `next`).
Per-API-key request-signing secrets are client credentials, not platform secrets: they live envelope-
encrypted on their key's item (tdev.security.apikeys) and are rotated by issuing a new key.

`read(secret_id)` goes through Powertools Parameters' SecretsProvider with max_age 3600 s, one provider per
staging label (Powertools caches by name only: AWSCURRENT and AWSPREVIOUS of one secret must not share an
entry). Every read, cached or fetched, is an audit line in the function's log: who (the function), which
secret and label, when, and whether it came from the cache; never the value. (CloudTrail records the
fetches, GetSecretValue, on AWS's side as well.)

`verify_with_rotation(secret_id, check)` is what a verifier of signatures uses: AWSCURRENT, then (on a
mismatch) AWSCURRENT fetched again (this container's copy may predate a rotation), then AWSPREVIOUS (what a
signer whose cache predates the rotation still signs with). So a rotation never invalidates what was
signed within the hour before it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tdev import aws, resets
from tdev.observability import logger

MAX_AGE_SECONDS = 3600
CURRENT, PREVIOUS, PENDING = "AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"
API_SIGNING = "api-signing"


def platform_secret_name(prefix: str, purpose: str) -> str:
    """A secret the platform generates and rotates itself: `tdev-dev/platform/api-signing`."""
    return f"{prefix}/platform/{purpose}"


REFETCH_SECONDS = 60.0
_providers: dict[str, Any] = {}
_refetched: dict[str, float] = {}
_lock = threading.Lock()


def _provider(stage: str) -> Any:
    with _lock:
        if stage not in _providers:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            _providers[stage] = SecretsProvider(boto3_client=aws.client("secretsmanager"))
        return _providers[stage]


def _reader() -> str:
    """Who reads: the function (its Powertools service name deployed; the process locally)."""
    return (
        os.environ.get("POWERTOOLS_SERVICE_NAME")
        or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        or f"local:{os.getpid()}"
    )


def read(secret_id: str, *, stage: str = CURRENT, purpose: str = "", force: bool = False) -> str | None:
    """The secret's string at `stage` (None when that label is on no version); cached for an hour."""
    provider = _provider(stage)
    cached = not force and provider.has_not_expired_in_cache(provider._build_cache_key(name=secret_id))
    value: Any = None
    outcome = "read"
    try:
        value = provider.get(secret_id, max_age=MAX_AGE_SECONDS, force_fetch=force, VersionStage=stage)
    except Exception as exc:
        outcome = "missing" if "ResourceNotFound" in str(exc) else "failed"
        if outcome == "failed":
            raise
    finally:
        logger.info(
            "secret read",
            extra={
                "audit": "secret_read",
                "secret": secret_id,
                "stage": stage,
                "reader": _reader(),
                "purpose": purpose,
                "cached": cached,
                "outcome": outcome,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
    if isinstance(value, bytes):
        value = value.decode()
    return value if isinstance(value, str) and value else None


def verify_with_rotation(secret_id: str, check: Callable[[str], bool], *, purpose: str = "") -> bool:
    """Whether `check` accepts one of the secret's valid values (current, refreshed current, previous)."""
    import time

    now = time.monotonic()
    # A refetch at most once a minute: made-up signatures must not turn into a GetSecretValue each.
    refetch = now - _refetched.get(secret_id, -REFETCH_SECONDS) >= REFETCH_SECONDS
    attempts = ((CURRENT, False), (CURRENT, True), (PREVIOUS, False))
    for stage, force in attempts:
        if force and not refetch:
            continue
        if force:
            _refetched[secret_id] = now
        value = read(secret_id, stage=stage, purpose=purpose, force=force)
        if value is not None and check(value):
            return True
    return False


@resets.on_reset
def reset() -> None:
    with _lock:
        _providers.clear()
        _refetched.clear()
