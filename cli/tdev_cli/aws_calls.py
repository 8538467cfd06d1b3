"""Every AWS call a function makes in the local runtime, attributed to the function whose handler runs.

A botocore `provide-client-params` hook on every client created while the recorder is on (the domain's
cached clients, boto3 resources, Agno's Bedrock client, Powertools' idempotency table) records the
service, the operation and its parameters. `tdev_cli.permissions` turns each call into the IAM actions
and resources it needs, so a test can check each function's synthesized role against what its code
really calls (permissions from evidence).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# The function whose handler runs in this context (set by LocalRuntime.invoke; threads started with a
# copied context, such as asyncio.to_thread, inherit it).
_current_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("tdev_function", default=None)


@dataclass(frozen=True)
class AwsCall:
    """One API call: which function made it, to which service (botocore's name) and operation."""

    function: str | None
    service: str  # botocore service name: dynamodb, kms, bedrock-runtime, apigateway, ...
    iam_prefix: str  # the service's IAM action prefix (its signing name): states, bedrock, ...
    operation: str  # the API operation name: TransactWriteItems, Converse, ...
    params: Any  # the caller's parameters (what the request carries)
    http_method: str  # the operation's HTTP method and filled request path (API Gateway's IAM actions)
    request_path: str
    context: Any = None  # extra facts for conditions (e.g. the tags of the resource the call touches)


@contextmanager
def running(function: str) -> Iterator[None]:
    """Attribute the calls made in this block (and in contexts copied from it) to `function`."""
    token = _current_function.set(function)
    try:
        yield
    finally:
        _current_function.reset(token)


def current_function() -> str | None:
    return _current_function.get()


class CallRecorder:
    """Records calls while started; `calls` in the order they were made."""

    def __init__(self) -> None:
        self.calls: list[AwsCall] = []
        self._lock = threading.Lock()
        self._patch: Any = None

    def start(self) -> CallRecorder:
        from unittest import mock

        import botocore.session

        original = botocore.session.Session.create_client
        recorder = self

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            endpoint = str(client.meta.endpoint_url)
            client.meta.events.register(
                "provide-client-params.*.*",
                lambda params, model, **kw: recorder._on_call(params, model, endpoint=endpoint, **kw),
            )
            return client

        self._patch = mock.patch.object(botocore.session.Session, "create_client", create_client)
        self._patch.start()
        return self

    def stop(self) -> None:
        if self._patch is not None:
            self._patch.stop()
            self._patch = None

    def _on_call(self, params: Any, model: Any, endpoint: str = "", **_: Any) -> None:
        service = model.service_model.service_name
        context = _resource_facts(service, model.name, params)
        if service == "apigatewaymanagementapi":
            # Authorised on the API and stage the endpoint names (https://<api>.execute-api.../<stage>).
            context = {"endpoint": endpoint}
        call = AwsCall(
            function=current_function(),
            service=service,
            iam_prefix=str(model.service_model.signing_name or service),
            operation=model.name,
            params=_copy(params),
            http_method=str(model.http.get("method", "POST")),
            request_path=_request_path(model, params),
            context=context,
        )
        with self._lock:
            self.calls.append(call)

    def by_function(self) -> dict[str, list[AwsCall]]:
        grouped: dict[str, list[AwsCall]] = {}
        for call in self.calls:
            if call.function is not None:
                grouped.setdefault(call.function, []).append(call)
        return grouped

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()


def _request_path(model: Any, params: Any) -> str:
    """The operation's request URI with its path parameters filled (`/apikeys/{api_Key}` -> `/apikeys/k1`)."""
    path = str(model.http.get("requestUri", "/")).split("?", 1)[0]
    shape = model.input_shape
    for member, member_shape in shape.members.items() if shape is not None else ():
        serialization = member_shape.serialization
        if serialization.get("location") == "uri" and member in params:
            name = serialization.get("name", member)
            path = path.replace(f"{{{name}+}}", str(params[member])).replace(
                f"{{{name}}}", str(params[member])
            )
    return path


def _copy(value: Any) -> Any:
    """Parameters as plain data, large blobs cut (bodies of model calls, objects)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value[:64])
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)[:64]


def _resource_facts(service: str, operation: str, params: Any) -> dict[str, Any] | None:
    """Facts IAM reads that the request does not carry: the tags of an existing API key (aws:ResourceTag
    on apigateway PATCH/DELETE of /apikeys/{id}), the configuration an AppConfig poll token stands for,
    read from the emulation."""
    if service == "appconfigdata" and operation == "GetLatestConfiguration":
        # The token names the session's configuration (AWS authorises the poll on it).
        from tdev_cli.local_appconfig import session_resource

        found = session_resource(str(params.get("ConfigurationToken", "")))
        return {"configuration": list(found)} if found else None
    if service != "apigateway" or "apiKey" not in params or operation == "CreateUsagePlanKey":
        return None
    try:
        from moto.apigateway.models import apigateway_backends
        from moto.core import DEFAULT_ACCOUNT_ID

        for region_backends in apigateway_backends[DEFAULT_ACCOUNT_ID].values():
            key = region_backends.keys.get(params["apiKey"])
            if key is not None:
                return {"resource_tags": dict(getattr(key, "tags", None) or {})}
    except (ImportError, KeyError, AttributeError):
        return None
    return None
