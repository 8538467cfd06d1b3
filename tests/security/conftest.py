"""One local runtime for the security tests (API Gateway's steps: authorizer, then the API function)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def secured(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A LocalRuntime with the spec's rate limits (100 / 15 min per principal)."""
    import os

    from tdev_cli.runtime import LocalRuntime

    saved = os.environ.get("REDIS_URL")
    with LocalRuntime(
        redis_url=redis_server, keys_dir=tmp_path_factory.mktemp("keys"), rate_limit_default="100/900"
    ) as rt:
        yield rt
    if saved is None:
        os.environ.pop("REDIS_URL", None)


@pytest.fixture
def user() -> str:
    """A fresh principal per test: its own rate-limit bucket and ownership."""
    return f"user-{uuid.uuid4().hex[:8]}"
