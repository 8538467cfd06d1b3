"""Layered configuration (tdev.config): defaults -> environment -> Parameter Store, typed and validated with
every error named; a change seen within the polling interval; every change audited with a checksum,
protected keys approved by a second admin, rollback to any version after a snapshot."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tdev.config.model import ConfigValidationError
from tdev.config.parameters import name
from tdev.data.config_audit import checksum
from tdev.errors import AuthorizationError, ConflictError
from tests.conftest import moto_table

TABLE = "tdev-config-test"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for variable in ("TDEV_DEFAULT_MODEL", "TDEV_RATE_LIMIT_DEFAULT", "TDEV_MAX_SESSIONS_PER_USER"):
        monkeypatch.delenv(variable, raising=False)
    with moto_table(monkeypatch, TABLE, TDEV_ENV="test", TDEV_CONFIG_POLL_SECONDS="1"):
        yield boto3.client("ssm")


def test_layers_merge_defaults_then_environment_then_parameter_store(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tdev import container
    from tdev.config.live import current

    assert current().max_sessions_per_user == 5  # the default
    monkeypatch.setenv("TDEV_MAX_SESSIONS_PER_USER", "7")
    monkeypatch.setenv("TDEV_RATE_LIMIT_DEFAULT", "50/60")
    container.reset()
    assert (current().max_sessions_per_user, current().rate_limit_default) == (7, "50/60")  # environment
    aws.put_parameter(Name=name("test", "config", "max_sessions_per_user"), Value="9", Type="String")
    aws.put_parameter(
        Name=name("test", "config", "fallback_models"),
        Value='["bedrock:amazon.nova-lite-v1:0"]',
        Type="String",
    )
    container.reset()
    configuration = current()
    assert configuration.max_sessions_per_user == 9  # Parameter Store wins
    assert configuration.rate_limit_default == "50/60"  # the environment still holds what it set
    assert configuration.fallback_models == ("bedrock:amazon.nova-lite-v1:0",)


def test_a_running_function_sees_a_change_within_the_polling_interval(aws: Any) -> None:
    from tdev.config.live import current

    assert current().default_model == "offline:tdev-offline-1"
    aws.put_parameter(Name=name("test", "config", "default_model"), Value="bedrock:x.y-v1:0", Type="String")
    assert current().default_model == "offline:tdev-offline-1"  # cached: one read per interval
    time.sleep(1.1)
    assert current().default_model == "bedrock:x.y-v1:0"


def test_a_bad_stored_value_is_not_used_and_the_rest_keeps_working(aws: Any) -> None:
    from tdev.config.live import current

    aws.put_parameter(Name=name("test", "config", "max_sessions_global"), Value="-3", Type="String")
    assert current().max_sessions_global == 100  # environment/default, the bad layer logged and ignored


def test_validation_names_every_invalid_key_at_once(aws: Any) -> None:
    from tdev.config.service import validate_layer

    with pytest.raises(ConfigValidationError) as refused:
        validate_layer(
            "config",
            {
                "default_model": "no-colon",
                "max_sessions_per_user": "0",
                "rate_limit_strict": "ten",
                "colour": "x",
            },
        )
    fields = [d["field"] for d in refused.value.details]
    assert fields == ["default_model", "rate_limit_strict", "max_sessions_per_user", "colour"]
    assert refused.value.status_code == 400 and refused.value.field == "default_model"


def test_every_change_is_a_version_with_who_what_why_and_a_checksum(aws: Any) -> None:
    from tdev.config.live import current
    from tdev.config.service import service

    applied = service().set_value(
        "default_model", "bedrock:amazon.nova-lite-v1:0", author="alice", reason="cheaper default"
    )
    assert applied["status"] == "applied" and applied["version"] == 1
    assert current().default_model == "bedrock:amazon.nova-lite-v1:0"  # the writer's container at once
    (version,) = service().history("config")
    assert (version["author"], version["reason"], version["kind"]) == ("alice", "cheaper default", "set")
    assert version["changed"] == {"default_model": {"from": None, "to": "bedrock:amazon.nova-lite-v1:0"}}
    assert version["checksum"] == checksum(version["layer"]) == applied["checksum"]


def test_a_protected_key_waits_for_another_admin(aws: Any) -> None:
    from tdev.config.live import current
    from tdev.config.service import service

    pending = service().set_value("rate_limit_default", "5/60", author="alice", reason="slow the bots")
    assert pending["status"] == "pending_approval" and pending["protected"] == ["rate_limit_default"]
    assert current().rate_limit_default == "100/900"  # not applied yet
    with pytest.raises(AuthorizationError):
        service().approve("config", pending["change_id"], approver="alice")
    applied = service().approve("config", pending["change_id"], approver="bob")
    assert (applied["author"], applied["approved_by"]) == ("alice", "bob")
    assert current().rate_limit_default == "5/60"


def test_rollback_takes_a_snapshot_then_restores_any_version(aws: Any) -> None:
    from tdev.config.live import current
    from tdev.config.service import service

    service().set_value("max_sessions_per_user", 3, author="alice", reason="one")  # v1
    service().set_value("max_sessions_per_user", 8, author="alice", reason="two")  # v2
    service().set_value("default_model", "bedrock:a.b-v1:0", author="alice", reason="three")  # v3

    result = service().rollback("config", 1, author="bob", reason="back to one")

    assert (result["snapshot_version"], result["version"]) == (4, 5)
    assert (current().max_sessions_per_user, current().default_model) == (3, "offline:tdev-offline-1")
    history = service().history("config")
    assert [(v["version"], v["kind"]) for v in history[:2]] == [(5, "rollback"), (4, "snapshot")]
    assert history[1]["layer"] == history[2]["layer"]  # the snapshot is the state just before
    assert history[0]["layer"] == history[-1]["layer"]  # version 1, exactly


def test_two_writers_never_share_a_version(aws: Any) -> None:
    from tdev.config.service import service

    audit = service().audit
    audit.record("config", layer={}, changed={}, author="a", reason="first", expected_head=0)
    with pytest.raises(ConflictError):
        audit.record("config", layer={}, changed={}, author="b", reason="stale", expected_head=0)
    assert [v["author"] for v in service().history("config")] == ["a"]


def test_unreadable_parameter_store_keeps_the_last_good_configuration(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tdev.config import live

    aws.put_parameter(Name=name("test", "config", "max_sessions_per_user"), Value="4", Type="String")
    assert live.current().max_sessions_per_user == 4

    def unreadable(**_: Any) -> Any:
        raise RuntimeError("AccessDenied")

    monkeypatch.setattr(live, "stored", unreadable)
    assert live.current().max_sessions_per_user == 4
