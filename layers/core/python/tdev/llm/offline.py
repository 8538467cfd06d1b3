"""A deterministic Agno model that needs no network: the default when no cloud model is configured.

It lets the whole workflow (plan → agents → aggregate) run on a laptop, in CI and in the local runtime with
real Agno agents, without credentials and with byte-identical results for the same input. It is a template
engine, not a language model, and every answer says so in its first line.

What it reads:
- the agent's role from the system message: `build_agent` puts a line "Role: <AgentName>" in the instructions;
- the task from the last user message: `compose_prompt` wraps the parts in `<request>`, `<task ...>` and
  `<upstream task_id=... agent=... status=...>` blocks. Without those blocks the whole message is the request.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

os.environ.setdefault("AGNO_TELEMETRY", "false")

from agno.metrics import MessageMetrics
from agno.models.base import Model
from agno.models.message import Message
from agno.models.response import ModelResponse

from tdev.llm.offline_words import (
    class_name,
    docstring_safe,
    features_in,
    fields_of,
    plural,
    resources_in,
    title_of,
)

if TYPE_CHECKING:
    from tdev.llm.offline_projects import Project

OFFLINE_MODEL_ID = "tdev-offline-1"
STREAM_LINES_PER_CHUNK = 6

# ------------------------------------------------------------------------------------------ parsing
_ROLE = re.compile(r"\bRole:\s*([A-Za-z][A-Za-z0-9_]*)")
_REQUEST = re.compile(r"<request>\n?(.*?)\n?</request>", re.DOTALL)
_TASK = re.compile(r"<task\b([^>]*)>\n?(.*?)\n?</task>", re.DOTALL)
_UPSTREAM = re.compile(r"<upstream\b([^>]*)>\n?(.*?)\n?</upstream>", re.DOTALL)
_ATTRIBUTE = re.compile(r'([a-z_]+)="([^"]*)"')


@dataclass(frozen=True)
class Upstream:
    """One upstream result as the prompt shows it."""

    task_id: str
    agent: str
    status: str
    dependency: str
    body: str

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


@dataclass(frozen=True)
class Brief:
    """What the offline model understood from the messages."""

    role: str
    request: str
    task: str
    upstream: tuple[Upstream, ...]


def read_brief(messages: Sequence[Message]) -> Brief:
    """Role from the system message, request/task/upstream from the last user message."""
    system = "\n".join(m.get_content_string() for m in messages if m.role == "system")
    users = [m.get_content_string() for m in messages if m.role == "user"]
    prompt = users[-1] if users else ""
    role_match = _ROLE.search(system)
    request_match = _REQUEST.search(prompt)
    task_match = _TASK.search(prompt)
    upstream = tuple(
        Upstream(
            task_id=attrs.get("task_id", "?"),
            agent=attrs.get("agent", "?"),
            status=attrs.get("status", "?"),
            dependency=attrs.get("dependency", "hard"),
            body=body.strip(),
        )
        for attrs, body in (
            (dict(_ATTRIBUTE.findall(m.group(1))), m.group(2)) for m in _UPSTREAM.finditer(prompt)
        )
    )
    return Brief(
        role=role_match.group(1) if role_match else "",
        request=(request_match.group(1) if request_match else prompt).strip(),
        task=(task_match.group(2) if task_match else "").strip(),
        upstream=upstream,
    )


_DEFAULTS = {"str": '""', "bool": "False", "int": "0"}
_TYPE_NAMES = {"str": "string", "bool": "boolean", "int": "integer"}


# ------------------------------------------------------------------------------------------- roles
def _design(brief: Brief) -> str:
    resources = resources_in(brief.request)
    features = features_in(brief.request)
    main = resources[0]
    lines = [f"# Design: {title_of(brief.request)}", "", "## Components"]
    lines.append(
        f"- API layer: JSON over HTTPS, routes per resource ({', '.join(plural(r) for r in resources)})."
    )
    lines.append("- Domain service: validation and rules, independent of the transport and the store.")
    lines.append(
        f"- Repository: one table, partition key `{main}_id`; the service talks to an interface, not the SDK."
    )
    if "auth" in features:
        lines.append(
            "- Auth: bearer tokens (JWT) verified on every request; the principal becomes the record owner."
        )
    if "search" in features:
        lines.append("- Query: filter and sort parameters validated against an allow-list of fields.")
    if "files" in features:
        lines.append(
            "- Files: uploads go straight to object storage through pre-signed URLs; records keep the key."
        )
    if "payments" in features:
        lines.append("- Payments: delegated to the payment provider; only its reference ids are stored.")
    lines += ["", "## Data model"]
    for resource in resources:
        lines += [f"### {class_name(resource)}", "| field | type | notes |", "|---|---|---|"]
        lines.append(f"| {resource}_id | string (uuid4) | primary key, server-generated |")
        for position, (name, kind) in enumerate(fields_of(resource)):
            note = "required, 1..200 characters" if position == 0 else "optional"
            lines.append(f"| {name} | {_TYPE_NAMES[kind]} | {note} |")
        if "auth" in features:
            lines.append("| owner_id | string | the authenticated principal; set by the server |")
        lines += ["| created_at | string (ISO 8601) | set by the server |", ""]
    lines.append("## Endpoints")
    for resource in resources:
        many, key = plural(resource), f"{resource}_id"
        lines += [
            f"- POST /{many}: create a {resource} (201 + Location header)",
            f"- GET /{many}: list {many} (limit 1..100, offset; stable order)",
            f"- GET /{many}/{{{key}}}: read one {resource} (404 when unknown)",
            f"- PATCH /{many}/{{{key}}}: change some fields of a {resource} (unknown fields are a 400)",
            f"- DELETE /{many}/{{{key}}}: delete a {resource} (204)",
        ]
    lines += [
        "",
        "## Decisions",
        "1. Resource-oriented REST with plural nouns: clients can guess every URL from the data model.",
        "2. Server-generated ids and timestamps: clients never pick keys, so no collisions or spoofed times.",
        "3. Validation at the boundary (types, lengths, allowed fields): the domain only sees valid input.",
        "4. Bounded pagination: a list call cannot read the whole table.",
    ]
    if "auth" in features:
        lines.append(
            "5. Every record has an owner and every read or write checks it: no access by guessing ids."
        )
    if len(resources) > 1:
        lines.append(f"- Relationships: {resources[1]} records reference a {main} by `{main}_id`.")
    lines += [
        "",
        "## Open questions",
        "- Expected volume and latency targets (they decide the table's capacity mode).",
    ]
    if "auth" not in features:
        lines.append(
            "- Who may call the API? The request names no authentication; the design assumes it is needed."
        )
    return "\n".join(lines)


def _code_module(resource: str, request: str) -> str:
    """A small, runnable, stdlib-only CRUD module for one resource."""
    cls, many, key = class_name(resource), plural(resource), f"{resource}_id"
    store = f"_{many.upper()}"
    fields = fields_of(resource)
    label = fields[0][0]
    extra = fields[1:]
    field_names = ", ".join(f'"{name}"' for name, _ in fields)
    params = ", ".join([f"{label}: str", *(f"{name}: {kind} = {_DEFAULTS[kind]}" for name, kind in extra)])
    args = ", ".join([f"{label}=_validate_{label}({label})", *(f"{name}={name}" for name, _ in extra)])
    dataclass_fields = [
        f"    {label}: str",
        *(f"    {name}: {kind} = {_DEFAULTS[kind]}" for name, kind in extra),
    ]
    return "\n".join(
        [
            f'"""In-memory {resource} service: the CRUD functions the HTTP handlers call.',
            "",
            f"Sketch for: {docstring_safe(title_of(request, 100))}",
            "Swap the dict for a repository (e.g. DynamoDB) without changing these signatures.",
            '"""',
            "",
            "from __future__ import annotations",
            "",
            "import uuid",
            "from dataclasses import asdict, dataclass, field",
            "from datetime import datetime, timezone",
            "",
            "MAX_PAGE = 100",
            "",
            "",
            "class NotFound(KeyError):",
            f'    """No {resource} has this id."""',
            "",
            "",
            "def _now() -> str:",
            "    return datetime.now(timezone.utc).isoformat()",
            "",
            "",
            "@dataclass",
            f"class {cls}:",
            *dataclass_fields,
            f"    {key}: str = field(default_factory=lambda: str(uuid.uuid4()))",
            "    created_at: str = field(default_factory=_now)",
            "",
            "",
            f"{store}: dict[str, {cls}] = {{}}",
            f"_UPDATABLE = frozenset({{{field_names}}})",
            "",
            "",
            f"def _validate_{label}(value: str) -> str:",
            "    value = value.strip()",
            "    if not 1 <= len(value) <= 200:",
            f'        raise ValueError("{label} must be 1..200 characters")',
            "    return value",
            "",
            "",
            f"def _find_{resource}({key}: str) -> {cls}:",
            "    try:",
            f"        return {store}[{key}]",
            "    except KeyError:",
            f"        raise NotFound({key}) from None",
            "",
            "",
            f"def create_{resource}({params}) -> dict:",
            f"    {resource} = {cls}({args})",
            f"    {store}[{resource}.{key}] = {resource}",
            f"    return asdict({resource})",
            "",
            "",
            f"def get_{resource}({key}: str) -> dict:",
            f"    return asdict(_find_{resource}({key}))",
            "",
            "",
            f"def list_{many}(limit: int = 50, offset: int = 0) -> list[dict]:",
            "    if not 1 <= limit <= MAX_PAGE or offset < 0:",
            '        raise ValueError(f"limit must be 1..{MAX_PAGE} and offset >= 0")',
            f"    return [asdict(x) for x in list({store}.values())[offset : offset + limit]]",
            "",
            "",
            f"def update_{resource}({key}: str, **changes: object) -> dict:",
            "    unknown = sorted(set(changes) - _UPDATABLE)",
            "    if unknown:",
            '        raise ValueError(f"unknown fields: {unknown}")',
            f'    if "{label}" in changes:',
            f'        changes["{label}"] = _validate_{label}(str(changes["{label}"]))',
            f"    {resource} = _find_{resource}({key})",
            "    for name, value in changes.items():",
            f"        setattr({resource}, name, value)",
            f"    return asdict({resource})",
            "",
            "",
            f"def delete_{resource}({key}: str) -> None:",
            f"    _find_{resource}({key})",
            f"    del {store}[{key}]",
        ]
    )


def _test_module(resource: str, request: str) -> str:
    """Pytest cases for `_code_module(resource)`: the contract the code agent's sketch must meet."""
    many, key, module = plural(resource), f"{resource}_id", f"{resource}_service"
    label = fields_of(resource)[0][0]
    store = f"_{many.upper()}"
    return "\n".join(
        [
            f'"""Tests for {module}: {docstring_safe(title_of(request, 100))}."""',
            "",
            "from __future__ import annotations",
            "",
            "import pytest",
            "",
            f"import {module} as svc",
            "",
            "",
            "@pytest.fixture(autouse=True)",
            "def empty_store() -> None:",
            f"    svc.{store}.clear()",
            "",
            "",
            f"def test_create_{resource}_returns_the_stored_record() -> None:",
            f'    created = svc.create_{resource}({label}="first {resource}")',
            f'    assert created["{label}"] == "first {resource}"',
            f'    assert svc.get_{resource}(created["{key}"]) == created',
            "",
            "",
            f"def test_create_{resource}_rejects_a_blank_{label}() -> None:",
            "    with pytest.raises(ValueError):",
            f'        svc.create_{resource}({label}="   ")',
            "",
            "",
            f"def test_get_{resource}_with_an_unknown_id_raises_not_found() -> None:",
            "    with pytest.raises(svc.NotFound):",
            f'        svc.get_{resource}("no-such-id")',
            "",
            "",
            f"def test_list_{many}_pages_with_limit_and_offset() -> None:",
            "    for n in range(3):",
            f'        svc.create_{resource}({label}=f"{resource} {{n}}")',
            f'    first_page = [x["{label}"] for x in svc.list_{many}(limit=2)]',
            f'    assert first_page == ["{resource} 0", "{resource} 1"]',
            f'    assert [x["{label}"] for x in svc.list_{many}(limit=2, offset=2)] == ["{resource} 2"]',
            "",
            "",
            '@pytest.mark.parametrize("limit", [0, 101])',
            f"def test_list_{many}_rejects_a_limit_out_of_range(limit: int) -> None:",
            "    with pytest.raises(ValueError):",
            f"        svc.list_{many}(limit=limit)",
            "",
            "",
            f"def test_update_{resource}_changes_only_the_given_fields() -> None:",
            f'    created = svc.create_{resource}({label}="before")',
            f'    updated = svc.update_{resource}(created["{key}"], {label}="after")',
            f'    assert updated["{label}"] == "after"',
            f'    assert updated["{key}"] == created["{key}"]',
            '    assert updated["created_at"] == created["created_at"]',
            "",
            "",
            f"def test_update_{resource}_rejects_unknown_fields() -> None:",
            f'    created = svc.create_{resource}({label}="x")',
            "    with pytest.raises(ValueError):",
            f'        svc.update_{resource}(created["{key}"], not_a_field="y")',
            "",
            "",
            f"def test_delete_{resource}_removes_it() -> None:",
            f'    created = svc.create_{resource}({label}="gone soon")',
            f'    svc.delete_{resource}(created["{key}"])',
            "    with pytest.raises(svc.NotFound):",
            f'        svc.get_{resource}(created["{key}"])',
        ]
    )


def _upstream_summary(brief: Brief) -> str:
    done = [u for u in brief.upstream if u.succeeded]
    if not brief.upstream:
        return "no upstream results (this task works from the request alone)"
    names = ", ".join(f"{u.task_id} ({u.agent})" for u in done) or "none usable"
    return f"{len(done)} of {len(brief.upstream)} upstream result(s) used: {names}"


def _code(brief: Brief) -> str:
    resources = resources_in(brief.request)
    main = resources[0]
    lines = [
        f"# Code: {main} service",
        "",
        f"Input: {_upstream_summary(brief)}.",
        f"File `{main}_service.py`: in-memory CRUD for {main}, the functions the API handlers call.",
        "",
        "```python",
        _code_module(main, brief.request),
        "```",
        "",
        "Notes:",
        "- Validation lives in the service, so every transport (HTTP, queue, CLI) gets the same rules.",
        f"- `update_{main}` accepts only known fields: mass assignment of ids or timestamps is refused.",
    ]
    if len(resources) > 1:
        lines.append(f"- Next: the same pattern for {', '.join(resources[1:])}.")
    if "auth" in features_in(brief.request):
        lines.append(
            f"- Auth is not in this sketch: add an `owner_id` to {class_name(main)}; check it in each call."
        )
    return "\n".join(lines)


def _tests(brief: Brief) -> str:
    main = resources_in(brief.request)[0]
    code_upstream = [u for u in brief.upstream if u.agent == "CodeAgent" and u.succeeded]
    source = (
        f"the CodeAgent result of task `{code_upstream[0].task_id}`"
        if code_upstream
        else "the interface the design implies (no code upstream)"
    )
    return "\n".join(
        [
            f"# Tests: {main} service",
            "",
            f"File `test_{main}_service.py`: pytest cases for `{main}_service.py`, written against {source}.",
            "Covers create, read, list with paging, update, delete, validation and not-found.",
            "",
            "```python",
            _test_module(main, brief.request),
            "```",
            "",
            f"Run: `pytest -q test_{main}_service.py` next to `{main}_service.py`.",
        ]
    )


_SECRET_HINT = re.compile(r"(AKIA[0-9A-Z]{12,}|(?i:password|secret|api[_-]?key)\s*[=:]\s*['\"][^'\"]+['\"])")


def _security(brief: Brief) -> str:
    resources = resources_in(brief.request)
    main, many = resources[0], plural(resources[0])
    features = features_in(brief.request)
    code = "\n".join(u.body for u in brief.upstream if u.agent == "CodeAgent" and u.succeeded)
    everything = "\n".join([brief.request, *(u.body for u in brief.upstream)])
    findings: list[str] = []
    if "auth" in features:
        findings.append(
            "[MEDIUM] A07 Identification and authentication failures: authentication is planned; verify JWTs "
            "with a pinned algorithm and check iss, aud, exp and nbf on every request."
        )
    else:
        findings.append(
            f"[HIGH] A07 Identification and authentication failures: the request names no authentication; "
            f"every /{many} endpoint that reads or writes private data needs an authenticated principal."
        )
    if code and "owner" not in code:
        findings.append(
            f"[HIGH] A01 Broken access control: {main} records carry no owner, so any caller who knows an id "
            f"can read, change or delete it (IDOR). Store owner_id and check it in get/update/delete."
        )
    elif not code:
        findings.append(
            f"[MEDIUM] A01 Broken access control: no code to review yet; require an ownership check on "
            f"/{many}/{{{main}_id}} before the first release."
        )
    if code and "raise ValueError" in code:
        findings.append(
            "[OK] Input validation: the code validates text length, page size and allowed update fields."
        )
    else:
        findings.append(
            "[MEDIUM] Input validation: validate types, lengths and allowed fields at the boundary; reject "
            "unknown fields instead of ignoring them."
        )
    if _SECRET_HINT.search(everything):
        findings.append(
            "[HIGH] Secrets: something that looks like a hard-coded credential appears in the input."
        )
    else:
        findings.append("[INFO] Secrets: no hard-coded credentials found in the request or upstream results.")
    if "files" in features:
        findings.append(
            "[MEDIUM] Uploads: limit size and content type; scan files; never serve them from the API origin."
        )
    if "payments" in features:
        findings.append("[HIGH] Payments: keep card data out of this system entirely (PCI DSS scope).")
    lines = [
        f"# Security review: {title_of(brief.request)}",
        "",
        f"Scope: the request and {_upstream_summary(brief)}.",
        "",
        "## Findings",
        *(f"{n}. {finding}" for n, finding in enumerate(findings, start=1)),
        "",
        "## Checklist (OWASP Top 10, 2021)",
        f"- [ ] A01 Broken access control: owner check on each /{many}/{{{main}_id}} call; deny by default.",
        "- [ ] A02 Cryptographic failures: TLS only; encryption at rest with KMS; no sensitive data in URLs.",
        "- [ ] A03 Injection: parameterised queries or condition expressions; never string-built queries.",
        f"- [ ] A04 Insecure design: per-principal rate limits and quotas on POST /{many}.",
        "- [ ] A05 Misconfiguration: least-privilege IAM per function, CORS allow-list, plain errors.",
        "- [ ] A06 Vulnerable components: pinned dependencies with automated vulnerability scanning.",
        "- [ ] A07 Authentication: short-lived tokens, pinned algorithms, revocation on logout.",
        "- [ ] A08 Integrity failures: signed build artifacts; no deserialisation of untrusted pickles/YAML.",
        "- [ ] A09 Logging and monitoring: structured logs without tokens or PII; alarms on 4xx/5xx spikes.",
        "- [ ] A10 SSRF: no server-side fetches of user-supplied URLs without an allow-list.",
        "- [ ] Secrets: in Secrets Manager or SSM SecureString, rotated, never in code, logs or env dumps.",
    ]
    return "\n".join(lines)


def _gist(body: str, width: int = 100) -> str:
    """First meaningful line of an upstream result (skips offline labels and blank lines)."""
    for line in body.splitlines():
        text = line.strip().lstrip("#").strip()
        if text and not text.startswith("[offline model"):
            return title_of(text, width)
    return "(empty)"


def _review(brief: Brief) -> str:
    main = resources_in(brief.request)[0]
    lines = [f"# Review: {title_of(brief.request)}", "", "## Upstream results"]
    if not brief.upstream:
        lines.append("- none: nothing upstream to review, so this review covers the request only.")
    for u in brief.upstream:
        if u.succeeded:
            lines.append(
                f"- {u.task_id} ({u.agent}) {u.status}: {_gist(u.body)} ({len(u.body.splitlines())} lines)"
            )
        else:
            lines.append(f"- {u.task_id} ({u.agent}) {u.status} ({u.dependency} dependency): {_gist(u.body)}")
    agents = {u.agent for u in brief.upstream if u.succeeded}
    code = "\n".join(u.body for u in brief.upstream if u.agent == "CodeAgent" and u.succeeded)
    tests = "\n".join(u.body for u in brief.upstream if u.agent == "TestAgent" and u.succeeded)
    lines += ["", "## Assessment"]
    for agent, what in (
        ("DesignAgent", "design"),
        ("CodeAgent", "code"),
        ("TestAgent", "tests"),
        ("SecurityAgent", "security review"),
    ):
        lines.append(f"- {what}: {'present' if agent in agents else 'missing'}")
    if code and tests:
        consistent = f"def create_{main}" in code and f"create_{main}(" in tests
        lines.append(
            f"- consistency: tests call create_{main} and the code defines it"
            if consistent
            else "- consistency: the tests do not exercise the functions the code defines"
        )
    high = sum(u.body.count("[HIGH]") for u in brief.upstream if u.agent == "SecurityAgent")
    if high:
        lines.append(f"- security: {high} high-severity finding(s) must be fixed before release")
    failed = [u for u in brief.upstream if not u.succeeded]
    lines += ["", "## Verdict"]
    if failed or high:
        reasons = [f"{u.task_id} {u.status.lower()}" for u in failed] + (
            [f"{high} high finding(s)"] if high else []
        )
        lines.append(f"CHANGES REQUESTED: {', '.join(reasons)}.")
    elif brief.upstream:
        lines.append("APPROVED WITH NOTES: every upstream task succeeded; address the notes above.")
    else:
        lines.append("NO VERDICT: there was nothing to review.")
    return "\n".join(lines)


def _generic(brief: Brief) -> str:
    role = brief.role or "unspecified role"
    return "\n".join(
        [
            f"# Response ({role})",
            "",
            f"Request: {title_of(brief.request, 200)}",
            f"Task: {title_of(brief.task, 200) if brief.task else '(none given)'}",
            f"Key terms: {', '.join(resources_in(brief.request))}",
            f"Input: {_upstream_summary(brief)}.",
            "",
            "This offline model has templates for DesignAgent, CodeAgent, TestAgent, SecurityAgent and",
            "ReviewAgent; other roles get this summary. Configure a cloud model (bedrock:...) for answers.",
        ]
    )


_TEMPLATES = {
    "DesignAgent": _design,
    "CodeAgent": _code,
    "TestAgent": _tests,
    "SecurityAgent": _security,
    "ReviewAgent": _review,
}


def estimate_tokens(text_length: int) -> int:
    """About four characters per token: the usual rule of thumb for English text and code."""
    return math.ceil(text_length / 4)


# ------------------------------------------------------------------------------------------- model
@dataclass
class OfflineModel(Model):
    """Agno model that answers from role templates: deterministic, free, no network."""

    id: str = OFFLINE_MODEL_ID
    name: str = "OfflineModel"
    provider: str = "Offline"

    @property
    def label(self) -> str:
        return f"[offline model {self.id}: deterministic template output, not written by an LLM]"

    def project_for(self, brief: Brief) -> Project:
        """The project this request gets (tests override it to script broken and fixed code)."""
        from tdev.llm.offline_projects import plan_project

        return plan_project(brief.request)

    def complete(self, messages: Sequence[Message], tools: Sequence[str] = ()) -> dict[str, Any]:
        """The whole answer (text, or tool calls when tools are offered) and its token estimate, as a
        provider's raw response would carry them."""
        brief = read_brief(messages)
        tool_calls: list[dict[str, Any]] = []
        if tools and brief.role:
            from tdev.llm import offline_tools

            project = self.project_for(brief)
            turn = offline_tools.read_turn(messages)
            tool_calls = offline_tools.plan_calls(brief.role, turn, project, set(tools))
            if not tool_calls:
                fallback = lambda: _TEMPLATES.get(brief.role, _generic)(brief)  # noqa: E731
                body = offline_tools.answer(brief.role, turn, project, fallback)
        else:
            body = _TEMPLATES.get(brief.role, _generic)(brief)
        text = "" if tool_calls else f"{self.label}\n\n{body}\n"
        input_chars = sum(len(m.get_content_string()) for m in messages)
        output_chars = len(text) + sum(len(c["function"]["arguments"]) for c in tool_calls)
        return {
            "text": text,
            "tool_calls": tool_calls,
            "usage": {
                "input_tokens": estimate_tokens(input_chars),
                "output_tokens": estimate_tokens(output_chars),
            },
        }

    def chunks(self, messages: Sequence[Message]) -> Iterator[dict[str, Any]]:
        """The answer in pieces of a few lines; usage travels on the last piece (Agno sums stream usage)."""
        completion = self.complete(messages)
        lines = completion["text"].splitlines(keepends=True)
        pieces = [
            "".join(lines[i : i + STREAM_LINES_PER_CHUNK])
            for i in range(0, len(lines), STREAM_LINES_PER_CHUNK)
        ]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            yield {"text": piece, "usage": completion["usage"] if last else None}

    def invoke(
        self,
        messages: list[Message],
        assistant_message: Message,
        response_format: Any = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        run_response: Any = None,
        compress_tool_results: bool = False,
    ) -> ModelResponse:
        assistant_message.metrics.start_timer()
        names = [n for n in (t.get("function", {}).get("name", "") for t in tools or []) if n]
        # Without tools, the one-argument call subclasses (e.g. tests' failing models) override.
        completion = self.complete(messages, tools=names) if names else self.complete(messages)
        response = self._parse_provider_response(completion)
        assistant_message.metrics.stop_timer()
        return response

    async def ainvoke(
        self,
        messages: list[Message],
        assistant_message: Message,
        response_format: Any = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        run_response: Any = None,
        compress_tool_results: bool = False,
    ) -> ModelResponse:
        return self.invoke(messages, assistant_message, tools=tools)

    def invoke_stream(
        self,
        messages: list[Message],
        assistant_message: Message,
        response_format: Any = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        run_response: Any = None,
        compress_tool_results: bool = False,
    ) -> Iterator[ModelResponse]:
        assistant_message.metrics.start_timer()
        for chunk in self.chunks(messages):
            yield self._parse_provider_response_delta(chunk)
        assistant_message.metrics.stop_timer()

    async def ainvoke_stream(
        self,
        messages: list[Message],
        assistant_message: Message,
        response_format: Any = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        run_response: Any = None,
        compress_tool_results: bool = False,
    ) -> AsyncIterator[ModelResponse]:
        for response in self.invoke_stream(messages, assistant_message):
            yield response

    def _parse_provider_response(self, response: dict[str, Any], **kwargs: Any) -> ModelResponse:
        return self._parse_provider_response_delta(response)

    def _parse_provider_response_delta(self, response: dict[str, Any]) -> ModelResponse:
        model_response = ModelResponse(role="assistant", content=response["text"] or None)
        if response.get("tool_calls"):
            model_response.tool_calls = list(response["tool_calls"])
        usage = response.get("usage")
        if usage is not None:
            model_response.response_usage = MessageMetrics(
                input_tokens=usage["input_tokens"],
                output_tokens=usage["output_tokens"],
                total_tokens=usage["input_tokens"] + usage["output_tokens"],
            )
        return model_response
