"""A typed Python client for the T-Developer API: a deployed stage, or `tdev serve`, by URL.

    from tdev_cli.client import Client
    with Client("https://abc.execute-api.eu-west-1.amazonaws.com/prod", token=jwt) as api:
        accepted = api.submit("Design and implement a REST API for todo items", project_id="todo")
        for view in api.follow(accepted.execution_id):      # progress, until a terminal status
            print(view.status, view.progress)

- Every route of the API has a method (`ROUTES` names them; a test checks them against the API's own
  OpenAPI document), with the domain's pydantic models for what the API answers with a model.
- Retries with exponential backoff and jitter on 429 and 5xx, honouring `Retry-After`; a POST is retried
  only when repeating it is safe (a 429 was refused before any work, a submission carries its
  Idempotency-Key, which `submit` always sends, the same one on every attempt).
- Live progress: `events(execution_id)` iterates over the execution's progress events (ids 1, 2, 3 ...)
  by server-sent events where the server streams them (`tdev serve`), else page by page from the same
  route; a dropped connection is resumed from the last id (`Last-Event-ID`), never losing or repeating
  an event. `RemoteApi.follow` (what `tdev run --api` shows) follows by it and polls when it cannot.
- Pagination: `audit_pages` / `audit_entries` follow the audit trail's `next` cursor.
- API keys that require signing: give `signing_secret` and every request is signed (tdev.security.signing).
- Errors raise `ApiError` carrying the API's JSON body (`error`, `message`, `field`, the status, the
  request id), so a caller can tell a 404 on `execution_id` from a 422 on `request`.
"""

from __future__ import annotations

import json
import random
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from tdev.models import AgentSpec, ExecutionView, RequestAccepted
from tdev.security.signing import sign

RETRYABLE = frozenset({429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = 30.0  # API Gateway's own integration limit is 29 s
TERMINAL = frozenset({"SUCCEEDED", "DEGRADED", "FAILED"})
TERMINAL_EVENTS = frozenset({"RequestCompleted", "RequestFailed"})  # tdev.data.progress.TERMINAL_TYPES

# (method, route) for each route the client calls: the API's OpenAPI document must list the same set.
ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/health"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("POST", "/v1/requests"),
        ("GET", "/v1/executions/{execution_id}"),
        ("POST", "/v1/executions/{execution_id}/cancel"),
        ("GET", "/v1/executions/{execution_id}/history"),
        ("GET", "/v1/executions/{execution_id}/events"),
        ("GET", "/v1/executions/{execution_id}/artifacts"),
        ("GET", "/v1/executions/{execution_id}/artifacts.zip"),
        ("GET", "/v1/executions/{execution_id}/artifacts/.+"),
        ("GET", "/v1/agents"),
        ("PUT", "/v1/agents/{agent_name}"),
        ("GET", "/v1/agents/{agent_name}/health"),
        ("GET", "/v1/platform/health"),
        ("GET", "/v1/models"),
        ("POST", "/v1/models/route"),
        ("POST", "/v1/sessions"),
        ("GET", "/v1/sessions/{session_id}"),
        ("POST", "/v1/sessions/{session_id}/pause"),
        ("POST", "/v1/sessions/{session_id}/resume"),
        ("POST", "/v1/sessions/{session_id}/terminate"),
        ("POST", "/v1/sessions/{session_id}/kill"),
        ("POST", "/v1/sessions/{session_id}/heartbeat"),
        ("POST", "/v1/sessions/{session_id}/messages"),
        ("POST", "/v1/sessions/{session_id}/memory"),
        ("POST", "/v1/sessions/{session_id}/checkpoints"),
        ("GET", "/v1/projects/{project_id}"),
        ("PUT", "/v1/projects/{project_id}/members/{principal}"),
        ("DELETE", "/v1/projects/{project_id}/members/{principal}"),
        ("POST", "/v1/projects/{project_id}/transfer"),
        ("GET", "/v1/api-keys"),
        ("POST", "/v1/api-keys"),
        ("DELETE", "/v1/api-keys/{key_id}"),
        ("POST", "/v1/tokens/revoke"),
        ("PUT", "/v1/roles/{name}"),
        ("GET", "/v1/audit/{principal}"),
        ("POST", "/v1/principals/{principal}/disable"),
        ("GET", "/v1/config"),
        ("GET", "/v1/config/history"),
        ("PUT", "/v1/config/{key}"),
        ("POST", "/v1/config/changes/{change_id}/approve"),
        ("POST", "/v1/config/rollback"),
        ("POST", "/v1/config/validate"),
        ("GET", "/v1/config/compliance"),
        ("GET", "/v1/errors"),
        ("GET", "/v1/errors/{signature}"),
        ("POST", "/v1/errors/{signature}/resolve"),
        ("GET", "/v1/flags"),
        ("PUT", "/v1/flags/{name}"),
        ("GET", "/v1/alerts"),
        ("POST", "/v1/alerts/{alert_id}/ack"),
        ("GET", "/v1/users/{user_id}/budget"),
        ("PUT", "/v1/users/{user_id}/budget"),
        ("GET", "/v1/projects/{project_id}/budget"),
        ("PUT", "/v1/projects/{project_id}/budget"),
        ("POST", "/v1/users/{user_id}/suspend"),
        ("POST", "/v1/users/{user_id}/unsuspend"),
    }
)


class ApiError(Exception):
    """An answer of 400 or more: the API's JSON error body, its status and request id."""

    def __init__(self, status: int, body: Any, request_id: str | None = None) -> None:
        self.status = status
        self.body = body
        self.request_id = request_id
        fields = body if isinstance(body, dict) else {}
        self.error = str(fields.get("error", "")) or f"http_{status}"
        self.message = str(fields.get("message", "")) or (body if isinstance(body, str) else "")
        self.field: str | None = fields.get("field")
        self.details: list[Any] = list(fields.get("details") or [])
        where = f" (field {self.field})" if self.field else ""
        super().__init__(f"{status} {self.error}: {self.message}{where}")


def _scope_path(scope: str) -> str:
    if scope not in ("user", "project"):
        raise ValueError(f"a budget's scope is user or project, not {scope!r}")
    return f"{scope}s"


def _segment(value: str) -> str:
    """A path parameter, percent-encoded so it cannot add a path segment of its own."""
    return quote(value, safe="")


class Client:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        signing_secret: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 4,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 20.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if parts.scheme == "http" and parts.hostname not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError("credentials are only sent over https (or to a loopback address)")
        self.base_url = base_url.rstrip("/")
        self._stage_path = parts.path.rstrip("/")  # e.g. /prod: not part of the route that is signed
        self.token, self.api_key, self.signing_secret = token, api_key, signing_secret
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff_seconds, max_backoff_seconds
        self._sleep = sleep
        self._http = httpx.Client(timeout=timeout, transport=transport, trust_env=False)

    # ------------------------------------------------------------------------------ plumbing
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if body:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.api_key:
            headers["X-Api-Key"] = self.api_key
            if self.signing_secret:
                headers.update(sign(self.signing_secret, method, path, body, nonce=secrets.token_urlsafe(24)))
        return headers

    def _retry_after(self, response: httpx.Response | None, attempt: int) -> float:
        if response is not None:
            header = response.headers.get("Retry-After", "")
            if header.strip().isdigit():
                return min(float(header), self.max_backoff)
        return min(self.backoff * 2**attempt, self.max_backoff) * (0.5 + random.random() / 2)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        safe_to_repeat: bool | None = None,
    ) -> httpx.Response:
        """One call, retried on 429/5xx and connection errors when repeating it is safe (see the module)."""
        method = method.upper()
        data = json.dumps(body).encode() if body is not None else b""
        repeatable = method in {"GET", "PUT", "DELETE", "HEAD"} if safe_to_repeat is None else safe_to_repeat
        query = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            sent = {**self._headers(method, path, data), **(headers or {})}  # signed afresh each attempt
            try:
                response = self._http.request(
                    method, f"{self.base_url}{path}", content=data or None, params=query, headers=sent
                )
            except httpx.TransportError:
                if not repeatable or attempt >= self.max_retries:
                    raise
                self._sleep(self._retry_after(None, attempt))
                attempt += 1
                continue
            retry = response.status_code in RETRYABLE and (repeatable or response.status_code == 429)
            if retry and attempt < self.max_retries:
                self._sleep(self._retry_after(response, attempt))
                attempt += 1
                continue
            if response.status_code >= 400:
                try:
                    error_body: Any = response.json()
                except ValueError:
                    error_body = response.text
                raise ApiError(response.status_code, error_body, response.headers.get("x-amzn-RequestId"))
            return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # -------------------------------------------------------------------------------- public
    def health(self) -> dict[str, Any]:
        return dict(self._json("GET", "/health"))

    def openapi(self) -> dict[str, Any]:
        return dict(self._json("GET", "/openapi.json"))

    def docs_page(self) -> str:
        return self.request("GET", "/docs").text

    # ---------------------------------------------------------------------------- requests
    def submit(
        self,
        request: str,
        *,
        project_id: str = "default",
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> RequestAccepted:
        """Submit a request (202). The Idempotency-Key (generated when not given) is the same on every retry,
        so a retried submission never starts a second execution."""
        key = idempotency_key or str(uuid.uuid4())
        body = {
            "request": request,
            "project_id": project_id,
            **{k: v for k, v in fields.items() if v is not None},
        }
        answer = self._json(
            "POST", "/v1/requests", body=body, headers={"Idempotency-Key": key}, safe_to_repeat=True
        )
        return RequestAccepted.model_validate(answer)

    def execution(self, execution_id: str) -> ExecutionView:
        return ExecutionView.model_validate(self._json("GET", f"/v1/executions/{_segment(execution_id)}"))

    def cancel(self, execution_id: str) -> ExecutionView:
        """The kill switch: the execution ends CANCELLED (again: the same; 409 when it ended otherwise)."""
        return ExecutionView.model_validate(
            self._json("POST", f"/v1/executions/{_segment(execution_id)}/cancel")
        )

    def history(self, execution_id: str) -> dict[str, Any]:
        """The execution's events in order and the state they replay to."""
        return dict(self._json("GET", f"/v1/executions/{_segment(execution_id)}/history"))

    def follow(
        self, execution_id: str, *, poll_seconds: float = 1.0, timeout: float = 600.0
    ) -> Iterator[ExecutionView]:
        """The execution each time its status, progress or task states change, ending with its terminal
        view; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last: tuple[Any, ...] | None = None
        while True:
            view = self.execution(execution_id)
            state = (view.status, view.progress, tuple((t, s.status) for t, s in view.tasks.items()))
            if state != last:
                last = state
                yield view
            if view.status.value in TERMINAL:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"execution {execution_id} still {view.status.value} after {timeout:.0f} s"
                )
            self._sleep(poll_seconds)

    def events(
        self,
        execution_id: str,
        *,
        last_event_id: int = 0,
        timeout: float = 600.0,
        poll_seconds: float = 1.0,
        max_reconnects: int = 10,
    ) -> Iterator[dict[str, Any]]:
        """The execution's progress events after `last_event_id`, in order, each once, ending with its
        terminal event (RequestCompleted / RequestFailed). Streamed (server-sent events) where the server
        streams, else read page by page; reconnects resume from the last id received. ApiError for
        refusals (401, 403, 404 on `execution_id`); TimeoutError after `timeout` seconds."""
        path = f"/v1/executions/{_segment(execution_id)}/events"
        deadline = time.monotonic() + timeout
        last, failures = last_event_id, 0
        while True:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"execution {execution_id}: no terminal event after {timeout:.0f} s")
            headers = {
                **self._headers("GET", path, b""),
                "Accept": "text/event-stream, application/json",
                "Last-Event-ID": str(last),
            }
            try:
                with self._http.stream(
                    "GET", f"{self.base_url}{path}", params={"after": last}, headers=headers
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        if response.status_code in RETRYABLE and failures < max_reconnects:
                            failures += 1
                            self._sleep(self._retry_after(response, failures))
                            continue
                        try:
                            error_body: Any = response.json()
                        except ValueError:
                            error_body = response.text
                        raise ApiError(
                            response.status_code, error_body, response.headers.get("x-amzn-RequestId")
                        )
                    if response.headers.get("Content-Type", "").startswith("text/event-stream"):
                        pages: Iterator[list[dict[str, Any]]] = (
                            [e] for e in _server_sent(response.iter_lines())
                        )
                        ended = False
                    else:  # a page (a deployed API does not stream through API Gateway)
                        page = json.loads(response.read())
                        pages, ended = iter([list(page["events"])]), bool(page["terminal"])
                    for batch in pages:
                        for event in batch:
                            if int(event["id"]) <= last:  # already seen before a reconnect
                                continue
                            last, failures = int(event["id"]), 0
                            yield event
                            if event["type"] in TERMINAL_EVENTS:
                                return
                    if ended:
                        return
            except (httpx.TransportError, httpx.StreamError):
                if failures >= max_reconnects:
                    raise
                failures += 1
                self._sleep(self._retry_after(None, failures))
                continue
            self._sleep(poll_seconds)  # a page was read, or a stream closed before the end

    def wait(self, execution_id: str, *, poll_seconds: float = 1.0, timeout: float = 600.0) -> ExecutionView:
        """The terminal view (TimeoutError after `timeout` seconds)."""
        [last] = deque(self.follow(execution_id, poll_seconds=poll_seconds, timeout=timeout), maxlen=1)
        return last

    def artifacts(self, execution_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/executions/{_segment(execution_id)}/artifacts"))

    def artifact(self, execution_id: str, path: str) -> dict[str, Any]:
        encoded = "/".join(_segment(part) for part in path.split("/"))
        return dict(self._json("GET", f"/v1/executions/{_segment(execution_id)}/artifacts/{encoded}"))

    def artifacts_zip(self, execution_id: str) -> bytes:
        return self.request("GET", f"/v1/executions/{_segment(execution_id)}/artifacts.zip").content

    # ------------------------------------------------------------------------ catalogues
    def agents(self) -> list[AgentSpec]:
        return [AgentSpec.model_validate(a) for a in self._json("GET", "/v1/agents")]

    def agent_health(self, name: str) -> dict[str, Any]:
        """`GET /v1/agents/{name}/health`: in flight, waiting, available, run history."""
        return dict(self._json("GET", f"/v1/agents/{_segment(name)}/health"))

    def platform_health(self) -> dict[str, Any]:
        """`GET /v1/platform/health` (operators): active agents, tasks queued/completed/failed, latency."""
        return dict(self._json("GET", "/v1/platform/health"))

    def register_agent(self, spec: AgentSpec, reason: str) -> dict[str, Any]:
        """`PUT /v1/agents/{name}` (admins): a new immutable version, the agent's current spec."""
        body = {"spec": spec.model_dump(mode="json"), "reason": reason}
        return dict(self._json("PUT", f"/v1/agents/{_segment(spec.name)}", body=body))

    def models(self, provider: str | None = None) -> dict[str, Any]:
        return dict(self._json("GET", "/v1/models", params={"provider": provider}))

    def route_model(self, **choice: Any) -> dict[str, Any]:
        """`POST /v1/models/route`: which model the router picks for a task (`task`, `agent`, ...)."""
        return dict(self._json("POST", "/v1/models/route", body=choice, safe_to_repeat=True))

    # --------------------------------------------------------------------------- sessions
    def open_session(self, **fields: Any) -> dict[str, Any]:
        return dict(self._json("POST", "/v1/sessions", body=fields))

    def session(self, session_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/sessions/{_segment(session_id)}"))

    def _session_action(self, session_id: str, action: str, body: Any = None) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/sessions/{_segment(session_id)}/{action}", body=body))

    def pause_session(self, session_id: str) -> dict[str, Any]:
        return self._session_action(session_id, "pause")

    def resume_session(self, session_id: str) -> dict[str, Any]:
        return self._session_action(session_id, "resume")

    def terminate_session(self, session_id: str) -> dict[str, Any]:
        return self._session_action(session_id, "terminate")

    def kill_session(self, session_id: str) -> dict[str, Any]:
        """Cancel the session's running executions and terminate it."""
        return self._session_action(session_id, "kill")

    def heartbeat(self, session_id: str) -> dict[str, Any]:
        return self._session_action(session_id, "heartbeat")

    def send_message(self, session_id: str, **message: Any) -> dict[str, Any]:
        return self._session_action(session_id, "messages", message)

    def remember(self, session_id: str, **memory: Any) -> dict[str, Any]:
        return self._session_action(session_id, "memory", memory)

    def checkpoint(self, session_id: str, **checkpoint: Any) -> dict[str, Any]:
        return self._session_action(session_id, "checkpoints", checkpoint)

    # --------------------------------------------------------------------------- projects
    def project(self, project_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/projects/{_segment(project_id)}"))

    def add_member(self, project_id: str, principal: str) -> dict[str, Any]:
        return dict(self._json("PUT", f"/v1/projects/{_segment(project_id)}/members/{_segment(principal)}"))

    def remove_member(self, project_id: str, principal: str) -> dict[str, Any]:
        return dict(
            self._json("DELETE", f"/v1/projects/{_segment(project_id)}/members/{_segment(principal)}")
        )

    def transfer_project(self, project_id: str, new_owner: str) -> dict[str, Any]:
        path = f"/v1/projects/{_segment(project_id)}/transfer"
        return dict(self._json("POST", path, body={"owner": new_owner}))

    # --------------------------------------------------------------------------- security
    def api_keys(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/api-keys"))

    def create_api_key(self, name: str, roles: list[str], **fields: Any) -> dict[str, Any]:
        return dict(self._json("POST", "/v1/api-keys", body={"name": name, "roles": roles, **fields}))

    def delete_api_key(self, key_id: str) -> dict[str, Any]:
        return dict(self._json("DELETE", f"/v1/api-keys/{_segment(key_id)}"))

    def revoke_token(self, jti: str, expires_at: int | None = None) -> dict[str, Any]:
        body = {"jti": jti, "expires_at": expires_at}
        return dict(self._json("POST", "/v1/tokens/revoke", body=body, safe_to_repeat=True))

    def put_role(self, name: str, **spec: Any) -> dict[str, Any]:
        return dict(self._json("PUT", f"/v1/roles/{_segment(name)}", body=spec))

    def disable_principal(self, principal: str) -> dict[str, Any]:
        path = f"/v1/principals/{_segment(principal)}/disable"
        return dict(self._json("POST", path, safe_to_repeat=True))

    def budget(self, scope: str, scope_id: str) -> dict[str, Any]:
        """A user's (`scope="user"`) or a project's budget this month: cap, spent, reserved, period."""
        return dict(self._json("GET", f"/v1/{_scope_path(scope)}/{_segment(scope_id)}/budget"))

    def set_budget(
        self, scope: str, scope_id: str, *, reason: str, budget_usd: float | None, budget_tokens: int | None
    ) -> dict[str, Any]:
        """Admins: a user's or a project's monthly cap (None: the configured default)."""
        body = {"budget_usd": budget_usd, "budget_tokens": budget_tokens, "reason": reason}
        path = f"/v1/{_scope_path(scope)}/{_segment(scope_id)}/budget"
        return dict(self._json("PUT", path, body=body, safe_to_repeat=True))

    def suspend_user(self, user_id: str, *, reason: str) -> dict[str, Any]:
        """Admins: refuse the user's new work and stop its executions in flight."""
        path = f"/v1/users/{_segment(user_id)}/suspend"
        return dict(self._json("POST", path, body={"reason": reason}, safe_to_repeat=True))

    def unsuspend_user(self, user_id: str, *, reason: str) -> dict[str, Any]:
        path = f"/v1/users/{_segment(user_id)}/unsuspend"
        return dict(self._json("POST", path, body={"reason": reason}, safe_to_repeat=True))

    def audit_pages(self, principal: str, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Each page of `principal`'s audit trail, newest first, following the `next` cursor."""
        before: str | None = None
        while True:
            page = self._json(
                "GET", f"/v1/audit/{_segment(principal)}", params={"limit": page_size, "before": before}
            )
            yield page
            before = page.get("next")
            if not before:
                return

    def audit_entries(self, principal: str, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        for page in self.audit_pages(principal, page_size=page_size):
            yield from page.get("entries", [])

    # ------------------------------------------------------------------ configuration and flags
    def configuration(self) -> dict[str, Any]:
        return dict(self._json("GET", "/v1/config"))

    def configuration_history(self, scope: str = "config", limit: int = 50) -> dict[str, Any]:
        return dict(self._json("GET", "/v1/config/history", params={"scope": scope, "limit": limit}))

    def set_configuration(self, key: str, value: Any, reason: str) -> dict[str, Any]:
        body = {"value": value, "reason": reason}
        return dict(self._json("PUT", f"/v1/config/{_segment(key)}", body=body))

    def approve_configuration(self, change_id: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/config/changes/{_segment(change_id)}/approve"))

    def rollback_configuration(self, version: int, reason: str, scope: str = "config") -> dict[str, Any]:
        body = {"version": version, "reason": reason, "scope": scope}
        return dict(self._json("POST", "/v1/config/rollback", body=body))

    def validate_configuration(self, layer: dict[str, str], scope: str = "config") -> dict[str, Any]:
        body = {"layer": layer, "scope": scope}
        return dict(self._json("POST", "/v1/config/validate", body=body, safe_to_repeat=True))

    def compliance(self, limit: int = 100) -> dict[str, Any]:
        """Admins: who changed what, unapproved protected changes, secrets past their rotation age."""
        return dict(self._json("GET", "/v1/config/compliance", params={"limit": limit}))

    def errors(
        self,
        *,
        status: str | None = None,
        since: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Error analytics: the groups by signature, most recently seen first (`next`: the following page)."""
        params = {"status": status, "since": since, "limit": limit, "cursor": cursor}
        return dict(self._json("GET", "/v1/errors", params=params))

    def error(self, signature: str) -> dict[str, Any]:
        """One error group: counts per window, sample, spike, MTTR and resolutions."""
        return dict(self._json("GET", f"/v1/errors/{_segment(signature)}"))

    def resolve_error(self, signature: str, *, reason: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/errors/{_segment(signature)}/resolve", body={"reason": reason}))

    def alerts(
        self,
        *,
        status: str | None = None,
        severity: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        params = {"status": status, "severity": severity, "limit": limit, "cursor": cursor}
        return dict(self._json("GET", "/v1/alerts", params=params))

    def acknowledge_alert(self, alert_id: str) -> dict[str, Any]:
        """Operators: acknowledging ends the alert's escalation at its next check."""
        return dict(self._json("POST", f"/v1/alerts/{_segment(alert_id)}/ack"))

    def flags(self, user: str | None = None, segment: str | None = None) -> dict[str, Any]:
        return dict(self._json("GET", "/v1/flags", params={"user": user, "segment": segment}))

    def set_flag(self, name: str, spec: dict[str, Any], reason: str) -> dict[str, Any]:
        return dict(self._json("PUT", f"/v1/flags/{_segment(name)}", body={"spec": spec, "reason": reason}))


def _server_sent(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The events of a text/event-stream (each one's `data` is the progress event as JSON); comments and
    `retry:` are skipped, an event without data is dropped as the format says."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield dict(json.loads("\n".join(data)))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    # a half-sent event (the connection dropped inside it) is not dispatched: it comes again on resume


class RemoteApi:
    """A `Client` behind the interface the CLI drives the embedded runtime with (`api`, `follow`, `wait`):
    `tdev run --api URL` runs the same code path against a deployed API or `tdev serve`."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.stream_fallbacks = 0  # follows that had to poll (the stream was unavailable)

    def api(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """(status, JSON body) without raising on 4xx/5xx; submissions get an Idempotency-Key."""
        extra = dict(headers or {})
        safe = None
        if method.upper() == "POST" and path == "/v1/requests":
            extra.setdefault("Idempotency-Key", str(uuid.uuid4()))
            safe = True
        try:
            response = self.client.request(method, path, body=body, headers=extra, safe_to_repeat=safe)
        except ApiError as exc:
            return exc.status, exc.body
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    def follow(self, execution_id: str, *, timeout: float = 600.0) -> Iterator[dict[str, Any]]:
        """The execution's view at each progress event (by stream), ending with its terminal view; by
        polling when the progress stream is unavailable (an API without the route, a refused stream)."""
        deadline = time.monotonic() + timeout
        seen = False
        try:
            for _event in self.client.events(execution_id, timeout=timeout, max_reconnects=3):
                seen = True
                yield self.client.execution(execution_id).model_dump(mode="json")
        except (ApiError, httpx.TransportError, httpx.StreamError, ValueError, KeyError) as exc:
            if seen and isinstance(exc, ApiError) and exc.status in (401, 403):
                raise
            self.stream_fallbacks += 1
        else:
            return
        remaining = max(1.0, deadline - time.monotonic())
        for view in self.client.follow(execution_id, timeout=remaining):
            yield view.model_dump(mode="json")

    def wait(self, execution_id: str, *, timeout: float = 600.0) -> dict[str, Any]:
        return self.client.wait(execution_id, timeout=timeout).model_dump(mode="json")

    def __enter__(self) -> RemoteApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
