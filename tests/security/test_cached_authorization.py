"""API-key lookups and roles through the read cache: fewer table reads, and a revoke or a role change that
was acknowledged is never undone by a cached copy in another container (two repositories/stores, each
with its own L1, stand for two Lambda containers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tdev import caching
from tdev.caching import CacheUnavailable, TieredCache
from tdev.crypto import EnvelopeCipher
from tdev.errors import AuthenticationError
from tdev.security.apikeys import ApiKeyRepository
from tdev.security.rbac import AccessRequest, AuditLog, Authorizer, PolicyStore, Role, RoleSpec
from tests.conftest import moto_table

TABLE = "tdev-authz-cache"


@pytest.fixture
def table(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_table(monkeypatch, TABLE):
        yield TABLE


class CountedKeys(ApiKeyRepository):
    reads = 0

    def _item(self, key_id: str) -> dict[str, Any] | None:
        CountedKeys.reads += 1
        return super()._item(key_id)


def _keys(table: str, cache: TieredCache) -> CountedKeys:
    cipher = EnvelopeCipher(boto3.client("kms").create_key()["KeyMetadata"]["KeyId"])
    return CountedKeys(table, cipher, cache=cache)


def test_a_key_is_read_from_the_table_once_and_a_revoke_reaches_every_container(table: str) -> None:
    one, two = _keys(table, caching.named("apikeys")), _keys(table, TieredCache("apikeys"))
    created = one.create(name="ci", roles=["developer"], owner="admin")
    CountedKeys.reads = 0
    for repo in (one, two, one, two):
        assert repo.verify(created.api_key).roles == ("developer",)
    assert two.rate_limit(created.key_id) == "60/60"
    assert CountedKeys.reads == 1
    stored = caching.named("apikeys")._redis().hget(caching.named("apikeys").entry_key(created.key_id), "v")
    assert "signing_secret" not in stored and "metadata" not in stored  # the secret never goes to Redis

    one.revoke(created.key_id, by="admin")  # acknowledged
    for repo in (two, one):
        with pytest.raises(AuthenticationError, match="revoked"):
            repo.verify(created.api_key)


def test_unknown_and_wrong_keys_are_refused_and_unknown_ids_are_not_cached(table: str) -> None:
    one = _keys(table, caching.named("apikeys"))
    created = one.create(name="ci", roles=["viewer"], owner="admin")
    wrong = created.api_key[:-4] + ("AAAA" if not created.api_key.endswith("AAAA") else "BBBB")
    one.verify(created.api_key)
    with pytest.raises(AuthenticationError, match="unknown"):
        one.verify(wrong)  # the cached hash is compared like the stored one
    unknown = "tdk_" + "0" * 16 + "_" + "A" * 43
    CountedKeys.reads = 0
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="unknown"):
            one.verify(unknown)
    assert CountedKeys.reads == 2


def test_a_revoke_is_not_acknowledged_while_redis_cannot_be_told(
    table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caching, "DOWN_SECONDS", 0.0)
    up = caching.named("apikeys")
    down = TieredCache("apikeys", redis=_refused)
    other = _keys(table, up)
    created = other.create(name="ci", roles=["developer"], owner="admin")
    other.verify(created.api_key)  # cached
    admin = _keys(table, down)
    with pytest.raises(CacheUnavailable):
        admin.revoke(created.key_id, by="admin")
    # The caller retries (from a container that reaches Redis): then it is acknowledged, and holds.
    _keys(table, up).revoke(created.key_id, by="admin")
    with pytest.raises(AuthenticationError, match="revoked"):
        other.verify(created.api_key)
    with pytest.raises(AuthenticationError, match="revoked"):
        admin.verify(created.api_key)  # without Redis: from the table


def _refused() -> Any:
    import redis

    raise redis.exceptions.ConnectionError("Connection refused")


def _role(name: str, effect: str) -> Role:
    spec = RoleSpec.model_validate(
        {
            "permissions": [
                {"id": f"{name}-{effect}", "resource": "report/*", "action": "read", "effect": effect}
            ]
        }
    )
    return Role.from_spec(name, spec)


class CountedStore(PolicyStore):
    queries = 0

    def _stored(self) -> list[dict[str, Any]]:
        CountedStore.queries += 1
        return super()._stored()


def test_roles_come_from_the_shared_cache_and_a_role_change_is_decided_everywhere_at_once(table: str) -> None:
    one = CountedStore(table, cache=caching.named("roles"))
    two = CountedStore(table, cache=TieredCache("roles"))
    one.put_role(_role("auditor", "allow"))
    CountedStore.queries = 0
    deciders = [Authorizer(store, AuditLog(table)) for store in (one, two)]
    request = AccessRequest(principal="p-1", roles=("auditor",), resource="report/q3", action="read")
    assert all(d.decide(request).allowed for d in deciders for _ in range(3))
    assert CountedStore.queries == 1  # one listing for both containers, six decisions

    one.put_role(_role("auditor", "deny"))  # acknowledged
    assert not any(d.decide(request).allowed for d in reversed(deciders))  # no cached decision either


def test_roles_without_redis_are_read_from_the_table_every_time(
    table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caching, "DOWN_SECONDS", 0.0)
    store = CountedStore(table, cache=TieredCache("roles", redis=_refused))
    with pytest.raises(CacheUnavailable):  # the change is stored; its acknowledgment waits for the cache
        store.put_role(_role("auditor", "allow"))
    CountedStore.queries = 0
    assert "auditor" in store.roles() and "auditor" in store.roles()
    assert CountedStore.queries == 2
