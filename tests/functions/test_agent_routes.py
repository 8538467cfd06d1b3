"""`PUT /v1/agents/{agent_name}` on a running local backend: admins only, every field validated (closed
enums, bounded sizes), versions immutable, the decision and the change audited; the agent is then listed
and runs under its own spec."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

SPEC = {
    "name": "DocsWriterAgent",
    "version": "1.0.0",
    "role": "Technical writer",
    "description": "Writes documentation.",
    "capabilities": ["documentation"],
    "keywords": ["docs", "readme"],
    "max_concurrent": 2,
    "timeout_seconds": 120,
    "tools": ["list_files", "read_file", "write_file"],
}


@pytest.fixture(scope="module")
def backend(redis_server: str) -> Iterator[Any]:
    from tdev_cli.runtime import LocalRuntime

    with LocalRuntime(redis_url=redis_server) as runtime:
        yield runtime


@pytest.fixture
def rt(backend: Any) -> Any:
    # A fresh admin per test: registering is a strict route (10 calls per 15 min per principal).
    return backend.as_principal(f"admin-{uuid.uuid4().hex[:8]}", ("admin",))


def test_the_sample_event_is_served(rt: Any) -> None:
    event = json.loads((REPO / "events" / "api_put_agent.json").read_text())
    response = rt.invoke("api", event)
    assert response["statusCode"] in (200, 201), response["body"]
    assert json.loads(response["body"])["ref"] == "DocsWriterAgent@1.0.0"


def test_an_admin_registers_a_version_once_and_it_is_listed(rt: Any) -> None:
    spec = {**SPEC, "name": "GlossaryAgent"}
    status, body = rt.api("PUT", "/v1/agents/GlossaryAgent", {"spec": spec, "reason": "a glossary writer"})
    assert status == 201, body
    assert (body["ref"], body["origin"], body["created"]) == ("GlossaryAgent@1.0.0", "custom", True)
    assert rt.api("PUT", "/v1/agents/GlossaryAgent", {"spec": spec, "reason": "again"})[0] == 200
    status, body = rt.api(
        "PUT", "/v1/agents/GlossaryAgent", {"spec": {**spec, "role": "Editor"}, "reason": "edit in place"}
    )
    assert (status, body["field"]) == (409, "version")
    status, body = rt.api(
        "PUT", "/v1/agents/GlossaryAgent", {"spec": {**spec, "version": "1.1.0"}, "reason": "more docs"}
    )
    assert status == 201
    listed = {a["name"]: a for a in rt.api("GET", "/v1/agents")[1]}
    assert listed["GlossaryAgent"]["version"] == "1.1.0" and "CodeAgent" in listed
    # Audited: the RBAC decision in the audit trail, the change with its author and reason in the registry.
    entries = rt.api("GET", f"/v1/audit/{rt.default_identity[0]}")[1]["entries"]
    assert any(e["resource"] == "agent/registry" and e["action"] == "update" for e in entries)
    from tdev import container

    assert container.agents().origin("GlossaryAgent") == "custom"


@pytest.mark.parametrize("roles", [("developer",), ("viewer",)])
def test_only_admins_register_agents(rt: Any, roles: tuple[str, ...]) -> None:
    rt.as_principal("someone", roles)
    status, body = rt.api("PUT", "/v1/agents/DocsWriterAgent", {"spec": SPEC, "reason": "let me"})
    assert status == 403, body


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tools": ["rm_rf"]}, "spec.tools.0"),  # a closed set of tools
        ({"model": "no-provider"}, "spec.model"),
        ({"max_concurrent": 0}, "spec.max_concurrent"),
        ({"timeout_seconds": 901}, "spec.timeout_seconds"),
        ({"version": "1.0"}, "spec.version"),
        ({"description": "x" * 1001}, "spec.description"),
        ({"capabilities": ["c"] * 21}, "spec.capabilities"),
        ({"keywords": ["k" * 101]}, "spec.keywords.0"),
        ({"shell": "bash"}, "spec.shell"),  # no unknown fields
        ({"name": "OtherAgent"}, "spec.name"),  # the path names the agent
    ],
)
def test_an_invalid_spec_is_a_400_naming_the_field(rt: Any, change: dict[str, Any], field: str) -> None:
    status, body = rt.api("PUT", "/v1/agents/DocsWriterAgent", {"spec": {**SPEC, **change}, "reason": "bad"})
    assert (status, body.get("field")) == (400, field), body


def test_an_invalid_name_or_missing_reason_is_a_400(rt: Any) -> None:
    status, body = rt.api("PUT", "/v1/agents/not-an-agent", {"spec": SPEC, "reason": "bad"})
    assert (status, body.get("field")) == (400, "agent_name"), body
    status, body = rt.api("PUT", "/v1/agents/DocsWriterAgent", {"spec": SPEC})
    assert (status, body.get("field")) == (400, "reason"), body


def test_the_health_sample_event_is_served(rt: Any) -> None:
    event = json.loads((REPO / "events" / "api_get_agent_health.json").read_text())
    response = rt.invoke("api", event)
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["agent"] == "CodeAgent"


@pytest.mark.parametrize("roles", [("viewer",), ("developer",), ("admin",)])
def test_an_agents_health_shows_its_load_against_capacity_and_its_history(
    rt: Any, roles: tuple[str, ...]
) -> None:
    from tdev import cache, container
    from tdev.orchestration.capacity import Semaphore, agent_key

    spec = {**SPEC, "name": f"Health{roles[0].capitalize()}Agent", "max_concurrent": 5}
    assert rt.api("PUT", f"/v1/agents/{spec['name']}", {"spec": spec, "reason": "watch it"})[0] == 201
    sem = Semaphore(cache.redis_client())
    for i in range(4):  # 4 of 5 in flight: at 0.8 x capacity, no longer available
        sem.acquire(agent_key(spec["name"]), 5, f"e-{i}#t", 60)
    container.agents().record_run(spec["name"], "e-9#t#SUCCEEDED", succeeded=True, duration_ms=300)
    container.agents().record_run(spec["name"], "e-8#t#FAILED", succeeded=False, duration_ms=100)

    rt.as_principal("watcher", roles)
    status, health = rt.api("GET", f"/v1/agents/{spec['name']}/health")

    assert status == 200, health
    assert health == {
        **health,
        "ref": f"{spec['name']}@1.0.0",
        "origin": "custom",
        "max_concurrent": 5,
        "in_flight": 4,
        "waiting": 0,
        "utilisation": 0.8,
        "available": False,
        "runs": 2,
        "success_rate": 0.5,
        "average_duration_ms": 200,
    }


def test_the_health_of_an_unknown_agent_is_a_404_naming_it(rt: Any) -> None:
    status, body = rt.api("GET", "/v1/agents/NoSuchAgent/health")
    assert (status, body.get("field")) == (404, "agent_name"), body


# ---------------------------------------------------------------------------- platform health
def test_the_platform_health_sample_event_is_served(rt: Any) -> None:
    event = json.loads((REPO / "events" / "api_get_platform_health.json").read_text())
    response = rt.invoke("api", event)
    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    assert body["agents"] >= 5 and set(body["tasks"]) == {"running", "queued", "completed", "failed"}


def test_the_platform_health_counts_active_agents_queued_completed_and_failed_tasks(rt: Any) -> None:
    from tdev import cache, container
    from tdev.errors import CapacityExhausted
    from tdev.orchestration.capacity import Semaphore, agent_key

    # Given a fresh agent with 2 runs in flight of 2 and one task refused (queued), and 3 recorded runs
    name = f"Platform{uuid.uuid4().hex[:6]}Agent"
    spec = {**SPEC, "name": name, "max_concurrent": 2}
    status, before = rt.api("GET", "/v1/platform/health")
    assert status == 200, before
    assert rt.api("PUT", f"/v1/agents/{name}", {"spec": spec, "reason": "platform view"})[0] == 201
    sem = Semaphore(cache.redis_client())
    leases = [sem.acquire(agent_key(name), 2, f"p-{i}#t", 60) for i in range(2)]
    with pytest.raises(CapacityExhausted):
        sem.acquire(agent_key(name), 2, "p-9#t", 60)
    registry = container.agents()
    registry.record_run(name, "p-1#t#SUCCEEDED", succeeded=True, duration_ms=300)
    registry.record_run(name, "p-2#t#SUCCEEDED", succeeded=True, duration_ms=500)
    registry.record_run(name, "p-3#t#FAILED", succeeded=False, duration_ms=100)

    # When an admin asks for the platform's health
    status, after = rt.api("GET", "/v1/platform/health")

    # Then the agent is counted as active, its queue and its runs are in the totals
    assert status == 200, after
    assert after["agents"] == before["agents"] + 1
    assert after["active_agents"] == before["active_agents"] + 1
    assert after["tasks"]["running"] == before["tasks"]["running"] + 2
    assert after["tasks"]["queued"] == before["tasks"]["queued"] + 1
    assert after["tasks"]["completed"] == before["tasks"]["completed"] + 2
    assert after["tasks"]["failed"] == before["tasks"]["failed"] + 1
    mine = next(a for a in after["by_agent"] if a["agent"] == name)
    assert mine == {"agent": name, "in_flight": 2, "waiting": 1, "max_concurrent": 2, "available": False}
    assert after["average_response_ms"] is not None
    if before["tasks"]["completed"] + before["tasks"]["failed"] == 0:
        assert after["average_response_ms"] == 300  # (300 + 500 + 100) / 3
    for lease in leases:
        sem.release(lease)


@pytest.mark.parametrize("roles", [("viewer",), ("developer",)])
def test_the_platform_health_is_for_operators_only(rt: Any, roles: tuple[str, ...]) -> None:
    rt.as_principal(f"user-{uuid.uuid4().hex[:8]}", roles)
    status, body = rt.api("GET", "/v1/platform/health")
    assert status == 403, body
