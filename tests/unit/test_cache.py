"""The shared Redis: a real server on 127.0.0.1, reached through REDIS_URL."""

from __future__ import annotations

import pytest

from tdev import cache
from tdev.errors import ConfigurationError
from tdev.settings import get_settings


def test_client_talks_to_the_real_server(redis_url: str) -> None:
    client = cache.redis_client()
    client.set("tdev:probe", "1", ex=5)
    assert client.get("tdev:probe") == "1"
    assert 0 < client.ttl("tdev:probe") <= 5
    assert client.connection_pool.connection_kwargs["port"] == int(redis_url.rsplit(":", 1)[1].split("/")[0])


def test_missing_redis_url_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLE_NAME", "t-table")
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    cache.reset()
    try:
        with pytest.raises(ConfigurationError, match="REDIS_URL"):
            cache.redis_client()
    finally:
        get_settings.cache_clear()
