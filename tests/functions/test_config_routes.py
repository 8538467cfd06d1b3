"""`/v1/config` and `/v1/flags` on a running local backend: admins only, validated, audited; a change made
in Parameter Store (configuration) or deployed in AppConfig (flags) reaches the running functions within
the polling interval, and flags switch product behaviour (the fallback chain, the verify loop) without a
redeploy; an unreadable flag store leaves the flags at their defaults."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

REPO = Path(__file__).resolve().parents[2]
POLL_SECONDS = 1


def fresh(name: str) -> str:
    """A principal no other test has used: the rate limits' buckets live in the session's shared Redis and
    changes are on the strict limit (10 per 15 min per principal), so a shared name (or this module's own
    earlier tests, or a retried attempt of the same test) could leave a test with an empty bucket (429)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((REPO / "events" / f"{name}.json").read_text()))


@pytest.fixture(scope="module")
def backend(redis_server: str) -> Iterator[Any]:
    """One running local backend for the module (each test leaves the configuration it found)."""
    from tdev_cli.runtime import LocalRuntime

    with LocalRuntime(redis_url=redis_server, config_poll_seconds=POLL_SECONDS) as runtime:
        yield runtime


@pytest.fixture
def admin() -> str:
    return fresh("config-admin")


@pytest.fixture
def rt(backend: Any, admin: str) -> Any:
    return backend.as_principal(admin, ("admin",))


@pytest.mark.parametrize(
    "name", ["api_get_config", "api_put_config", "api_get_flags", "api_put_flag", "api_get_config_compliance"]
)
def test_each_sample_event_is_served(rt: Any, name: str) -> None:
    response = rt.invoke("api", load_event(name))
    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    if name == "api_put_config":
        assert body["status"] == "applied" and body["author"] == "sample-admin"
    if name == "api_get_flags":
        assert set(body["flags"]) >= {"verify_loop", "fallback_chain"}
        assert body["flags"]["verify_loop"]["value"] is True


CALLS = [
    ("GET", "/v1/config", None),
    ("GET", "/v1/config/history", None),
    ("GET", "/v1/config/compliance", None),
    ("PUT", "/v1/config/default_model", {"value": "bedrock:a.b-v1:0", "reason": "try it"}),
    ("POST", "/v1/config/validate", {"layer": {}}),
    ("POST", "/v1/config/rollback", {"version": 1, "reason": "try it"}),
    ("POST", "/v1/config/changes/0123456789abcdef/approve", None),
    ("GET", "/v1/flags", None),
    ("PUT", "/v1/flags/verify_loop", {"spec": {"enabled": False}, "reason": "try it"}),
]


def test_only_admins_read_or_change_configuration(rt: Any) -> None:
    for roles in (("developer",), ("viewer",)):
        rt.as_principal(fresh("someone"), roles)
        for method, path, body in CALLS:
            status, answer = rt.api(method, path, body)
            assert status == 403, (roles, method, path, answer)


def test_invalid_changes_are_refused_naming_each_field(rt: Any) -> None:
    status, body = rt.api(
        "POST",
        "/v1/config/validate",
        {"layer": {"default_model": "no-colon", "max_sessions_per_user": "0", "colour": "blue"}},
    )
    assert status == 400
    assert [d["field"] for d in body["details"]] == ["default_model", "max_sessions_per_user", "colour"]
    status, body = rt.api("PUT", "/v1/config/max_sessions_global", {"value": -1, "reason": "oops"})
    assert (status, body["field"]) == (400, "max_sessions_global")
    status, body = rt.api("PUT", "/v1/config/nope", {"value": 1, "reason": "oops"})
    assert (status, body["field"]) == (400, "key")
    status, body = rt.api("PUT", "/v1/flags/f", {"spec": {"rollout_percent": 150}, "reason": "oops"})
    assert (status, body["field"]) == (400, "spec.rollout_percent")
    status, body = rt.api("PUT", "/v1/config/default_model", {"value": "bedrock:a.b-v1:0"})
    assert (status, body["field"]) == (400, "reason")


def test_a_protected_change_needs_a_second_admin_and_rolls_back(rt: Any, admin: str) -> None:
    # The value before: what the rollback must restore. A retried attempt may find an earlier attempt's
    # change still applied, so the new value is one that differs from whatever is there.
    status, shown = rt.api("GET", "/v1/config")
    assert status == 200, shown
    before = shown["values"]["max_sessions_global"]
    value = 7 if before != 7 else 8
    # A version of the configuration as it is now, for the rollback to return to: on a fresh backend (this
    # test first on its worker) the change below would be version 1, with nothing before it.
    status, baseline = rt.api(
        "PUT",
        "/v1/config/max_sessions_per_user",
        {"value": shown["values"]["max_sessions_per_user"], "reason": "the state to return to"},
    )
    assert status == 200 and baseline["status"] == "applied", baseline
    status, pending = rt.api("PUT", "/v1/config/max_sessions_global", {"value": value, "reason": "cap load"})
    assert status == 202 and pending["status"] == "pending_approval", pending
    change = f"/v1/config/changes/{pending['change_id']}/approve"
    assert rt.api("POST", change)[0] == 403  # the author cannot approve it
    second = fresh("second-admin")
    rt.as_principal(second, ("admin",))
    status, applied = rt.api("POST", change)
    assert status == 200 and (applied["author"], applied["approved_by"]) == (admin, second), applied
    assert rt.api("GET", "/v1/config")[1]["values"]["max_sessions_global"] == value

    assert applied["version"] == baseline["version"] + 1, (baseline, applied)
    status, rolled = rt.api("POST", "/v1/config/rollback", {"version": baseline["version"], "reason": "undo"})
    assert status == 200 and rolled["snapshot_version"] == applied["version"] + 1, rolled
    assert rt.api("GET", "/v1/config")[1]["values"]["max_sessions_global"] == before
    status, back = rt.api("POST", "/v1/config/rollback", {"version": 999, "reason": "nothing there"})
    assert (status, back["field"]) == (404, "version")
    history = rt.api("GET", "/v1/config/history")[1]["versions"]
    assert [v["kind"] for v in history[:3]] == ["rollback", "snapshot", "set"]
    assert history[2]["approved_by"] == second and history[2]["reason"] == "cap load"


def test_the_fallback_chain_flag_switches_a_running_backend_without_redeploy(rt: Any) -> None:
    from tdev import container
    from tdev.llm.fallback import model_chain
    from tdev.models import Execution, ExecutionStatus, utc_now

    spec = container.agents().get("CodeAgent")
    execution = Execution.model_validate(
        {
            "execution_id": "e-1",
            "request": "x",
            "project_id": "default",
            "principal": "dev",
            "status": ExecutionStatus.RUNNING,
            "created_at": utc_now(),
            "updated_at": utc_now(),
            "correlation_id": "c-1",
            "fallback_models": ["bedrock:amazon.nova-lite-v1:0"],
            "model": "bedrock:amazon.nova-pro-v1:0",
        }
    )
    assert model_chain(execution, spec) == ["bedrock:amazon.nova-pro-v1:0", "bedrock:amazon.nova-lite-v1:0"]
    status, _ = rt.api("PUT", "/v1/flags/fallback_chain", {"spec": {"enabled": False}, "reason": "incident"})
    assert status == 200
    assert model_chain(execution, spec) == ["bedrock:amazon.nova-pro-v1:0"]
    # and the configuration's default model and fallbacks apply where nothing else names one
    plain = execution.model_copy(update={"model": None, "fallback_models": []})
    rt.api("PUT", "/v1/flags/fallback_chain", {"spec": {"enabled": True}, "reason": "over"})
    rt.api(
        "PUT", "/v1/config/fallback_models", {"value": ["bedrock:amazon.nova-micro-v1:0"], "reason": "cheap"}
    )
    assert model_chain(plain, spec.model_copy(update={"model": None, "fallback_models": []})) == [
        "offline:tdev-offline-1",
        "bedrock:amazon.nova-micro-v1:0",
    ]
    rt.api("PUT", "/v1/config/fallback_models", {"value": [], "reason": "back"})


def _deploy_flags(document: dict[str, Any]) -> None:
    """What an operator does in AppConfig around the API: a new hosted version of the flags, deployed."""
    import os

    appconfig = boto3.client("appconfig", region_name="us-east-1")
    application, profile = os.environ["TDEV_FLAGS_APPLICATION_ID"], os.environ["TDEV_FLAGS_PROFILE_ID"]
    version = appconfig.create_hosted_configuration_version(
        ApplicationId=application,
        ConfigurationProfileId=profile,
        Content=json.dumps(document).encode(),
        ContentType="application/json",
    )["VersionNumber"]
    appconfig.start_deployment(
        ApplicationId=application,
        EnvironmentId=os.environ["TDEV_FLAGS_ENVIRONMENT_ID"],
        DeploymentStrategyId=os.environ["TDEV_FLAGS_DEPLOYMENT_STRATEGY_ID"],
        ConfigurationProfileId=profile,
        ConfigurationVersion=str(version),
    )


def test_a_flag_deployed_in_appconfig_reaches_the_running_backend_within_the_polling_interval(
    rt: Any,
) -> None:
    from tdev.config import flags, live
    from tdev.config.flag_store import layer

    deployed = {name: json.loads(text) for name, text in live.stored("flags").items()}
    # Given a running backend on which the verify loop is on, as deployed
    _deploy_flags({**deployed, "verify_loop": {"enabled": True}})
    time.sleep(POLL_SECONDS + 0.2)
    assert flags.enabled("verify_loop", "someone") is True
    # When an operator deploys a version that turns it off (AppConfig only: no API, no redeploy)
    _deploy_flags({**deployed, "verify_loop": {"enabled": False}})
    # Then within the polling interval the running backend evaluates it off
    time.sleep(POLL_SECONDS + 0.2)
    assert flags.enabled("verify_loop", "someone") is False
    status, body = rt.api("GET", "/v1/flags?user=someone")
    assert status == 200 and body["flags"]["verify_loop"]["value"] is False
    _deploy_flags(deployed)
    time.sleep(POLL_SECONDS + 0.2)
    assert layer(deployed) == live.stored("flags")


def test_a_flag_change_and_its_rollback_are_audited_versions_deployed_in_appconfig(rt: Any) -> None:
    import os

    from tdev.config import live

    appconfig = boto3.client("appconfig", region_name="us-east-1")
    application, profile = os.environ["TDEV_FLAGS_APPLICATION_ID"], os.environ["TDEV_FLAGS_PROFILE_ID"]

    def hosted(version: int) -> dict[str, Any]:
        answer = appconfig.get_hosted_configuration_version(
            ApplicationId=application, ConfigurationProfileId=profile, VersionNumber=version
        )
        return dict(json.loads(answer["Content"].read()))

    name = f"trial_{uuid.uuid4().hex[:8]}"
    # When an admin turns a new flag on through the API
    status, applied = rt.api("PUT", f"/v1/flags/{name}", {"spec": {"enabled": True}, "reason": "try"})
    assert status == 200, applied
    # Then a hosted version holding every flag is deployed, and the running backend reads it
    environment = os.environ["TDEV_FLAGS_ENVIRONMENT_ID"]
    version = rt.appconfig.state.deployed[(application, environment, profile)]
    deployed = live.stored("flags")
    assert json.loads(deployed[name]) == {"enabled": True}
    assert hosted(version) == {k: json.loads(v) for k, v in deployed.items()}
    # When it is rolled back to the version before
    status, rolled = rt.api(
        "POST",
        "/v1/config/rollback",
        {"scope": "flags", "version": applied["version"] - 1, "reason": "undo"},
    )
    assert status == 200 and rolled["snapshot_version"] == applied["version"] + 1, rolled
    # Then the flag is gone from the deployed document, and the audit shows set, snapshot, rollback
    time.sleep(POLL_SECONDS + 0.2)
    assert name not in live.stored("flags")
    assert rt.appconfig.state.deployed[(application, environment, profile)] == version + 1
    assert name not in hosted(version + 1)
    history = rt.api("GET", "/v1/config/history?scope=flags")[1]["versions"]
    assert [v["kind"] for v in history[:3]] == ["rollback", "snapshot", "set"]
    assert name in history[0]["changed"] and history[0]["changed"][name]["to"] is None


def test_an_unreadable_flag_store_falls_back_to_the_flags_defaults_and_recovers(
    backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from tdev.config import flags
    from tdev.config.flags import PRODUCT_FLAGS

    # Given the deployed flags turn the fallback chain off
    _deploy_flags({"fallback_chain": {"enabled": False}, "verify_loop": {"enabled": True}})
    time.sleep(POLL_SECONDS + 0.2)
    assert flags.enabled("fallback_chain", "someone") is False
    # When AppConfig's data plane fails (every configuration session's token is refused)
    backend.appconfig.state.sessions.clear()
    time.sleep(POLL_SECONDS + 0.2)
    read_failures = []
    with caplog.at_level("WARNING"):
        value = flags.current().explain("fallback_chain", "someone")
        read_failures = [r for r in caplog.records if "AppConfig unreadable" in r.getMessage()]
    # Then the flag evaluates to its declared default, and the failure is logged
    assert value == (PRODUCT_FLAGS["fallback_chain"].enabled, "enabled")
    assert read_failures
    # And the next read opens a new session and sees the deployed document again
    assert flags.enabled("fallback_chain", "someone") is False
    from tdev.config.flag_store import initial_document

    _deploy_flags(json.loads(initial_document()))
    time.sleep(POLL_SECONDS + 0.2)
    assert flags.enabled("fallback_chain", "someone") is True


def test_a_parameter_store_change_reaches_the_running_api_within_the_polling_interval(rt: Any) -> None:
    """Last in this module: it tightens the default limit for every principal while it runs."""
    # Given a running backend that lets the developer through
    rt.as_principal(fresh("dev"), ("developer",))
    assert [rt.api("GET", "/v1/agents")[0] for _ in range(3)] == [200, 200, 200]
    # When an operator tightens the rate limit in Parameter Store (no API, no redeploy)
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/t-developer/local/config/rate_limit_default", Value="2/600", Type="String")
    time.sleep(POLL_SECONDS + 0.2)
    # Then within the polling interval the running API enforces it
    statuses = [rt.api("GET", "/v1/agents")[0] for _ in range(3)]
    assert statuses[-1] == 429 and statuses.count(429) >= 1
    ssm.delete_parameter(Name="/t-developer/local/config/rate_limit_default")


def test_the_compliance_report_names_authors_unapproved_protected_changes_and_secret_ages(rt: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from tdev.config.compliance import secret_status
    from tdev.config.parameters import name
    from tdev_cli.runtime import API_SIGNING_SECRET

    author = f"compliance-author-{uuid.uuid4().hex[:8]}"  # its own strict rate-limit bucket
    rt.as_principal(author, ("admin",))
    # Given a version to come back to, a protected change approved by a second admin, then rolled back to
    # that version by its author alone ...
    status, baseline = rt.api(
        "PUT", "/v1/config/default_model", {"value": "offline:tdev-offline-1", "reason": "baseline"}
    )
    assert status == 200, baseline
    status, pending = rt.api("PUT", "/v1/config/max_sessions_global", {"value": 9, "reason": "audit me"})
    assert status == 202
    rt.as_principal("compliance-approver", ("admin",))
    status, approved = rt.api("POST", f"/v1/config/changes/{pending['change_id']}/approve")
    assert status == 200
    rt.as_principal(author, ("admin",))
    status, rolled = rt.api(
        "POST", "/v1/config/rollback", {"version": baseline["version"], "reason": "alone"}
    )
    assert status == 200
    # ... and a protected key written straight into Parameter Store, around the API
    ssm = boto3.client("ssm", region_name="us-east-1")
    around = name("local", "config", "rate_limit_strict")
    ssm.put_parameter(Name=around, Value="999/1", Type="String")
    try:
        status, report = rt.api("GET", "/v1/config/compliance")
    finally:
        ssm.delete_parameter(Name=around)
    assert status == 200, report
    # Then: who changed what
    mine = report["by_author"][author]
    # the baseline, the approved change, the rollback (its snapshot is not a change); the baseline touched
    # default_model only if an earlier test had not already stored that value
    assert mine["changes"] == 3
    assert "config/max_sessions_global" in mine["keys"]
    assert set(mine["keys"]) <= {"config/default_model", "config/max_sessions_global"}
    # the approved change is not a finding, the lone rollback of a protected key is, and so is the write
    findings = report["unapproved_protected_changes"]
    audited = [f for f in findings if f["source"] == "audit"]
    assert approved["version"] not in [f["version"] for f in audited]
    assert {
        "version": rolled["version"],
        "kind": "rollback",
        "keys": ["max_sessions_global"],
    }.items() <= next(f for f in audited if f["version"] == rolled["version"]).items()
    written = [f for f in findings if f["source"] == "parameter_store"]
    assert [(f["keys"], f["stored"]) for f in written] == [(["rate_limit_strict"], "999/1")]
    assert report["compliant"] is False
    # the API signing secret, made at start-up, is young; 91 days on and never rotated, it is overdue
    (signing,) = [s for s in report["secrets"] if s["secret"] == API_SIGNING_SECRET]
    assert signing["overdue"] is False and signing["age_days"] < 1 and signing["max_age_days"] == 90
    later = secret_status(API_SIGNING_SECRET, now=datetime.now(UTC) + timedelta(days=91))
    assert later["overdue"] is True
    assert not {"SecretString", "value"} & set(later)


def test_the_audit_trails_cursor_is_signed_with_the_api_signing_secret(rt: Any, admin: str) -> None:
    from urllib.parse import quote

    # Given an admin with several audited decisions
    for _ in range(3):
        assert rt.api("GET", "/v1/config")[0] == 200
    status, first = rt.api("GET", f"/v1/audit/{admin}?limit=1")
    assert status == 200 and first["next"] is not None
    # Then its `next` carries a signature (the API signing secret), and following it reads the next page
    sort_key, _, signature = first["next"].rpartition(".")
    assert "#" in sort_key and len(signature) == 22
    status, second = rt.api("GET", f"/v1/audit/{admin}?limit=1&before={quote(first['next'], safe='')}")
    assert status == 200 and second["entries"] != first["entries"]
    # A cursor without its signature, or with another's, is refused naming the parameter
    other = "A" * 22 if signature != "A" * 22 else "B" * 22
    for forged in (sort_key, f"{sort_key}.{other}"):
        status, refused = rt.api("GET", f"/v1/audit/{admin}?limit=1&before={quote(forged, safe='')}")
        assert (status, refused["field"]) == (400, "before"), refused
