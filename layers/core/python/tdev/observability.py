"""Powertools utilities, created once per process and shared by every handler and domain module."""

from __future__ import annotations

import json
import os
import warnings
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics, Tracer

from tdev.redaction import redact

# Each function's stack sets POWERTOOLS_SERVICE_NAME (tdev-api, tdev-run-agent, ...); the fallback
# keeps logs attributable when the code runs elsewhere (local runtime, tests).
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "t-developer")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "TDeveloper")

# Read-only routes and steps publish no application metric on purpose; the warning would be noise.
warnings.filterwarnings("ignore", message="No application metrics to publish")


class _TracerOnFirstUse:
    """The Powertools Tracer, built the first time anything asks for it.

    Building it imports the X-Ray SDK, whose recorder creates its sampler's botocore X-Ray client at import
    (the service model loaded twice: ~100-200 ms of every cold start on Lambda, seconds on a loaded
    machine). A function that never traces (the authorizer) should not pay for that; the others build it
    when their module decorates its handler, at the same point of the cold start as before.
    """

    def __init__(self, service: str) -> None:
        self._service = service
        self._tracer: Tracer | None = None

    def __getattr__(self, name: str) -> Any:
        if self._tracer is None:
            self._tracer = Tracer(service=self._service)
        return getattr(self._tracer, name)


def _redacted_json(log: dict[str, Any]) -> str:
    """Every log line, secrets redacted (the one redactor stored errors use too: tdev.redaction)."""
    return json.dumps(redact(log), default=str, separators=(",", ":"), ensure_ascii=False)


logger = Logger(service=SERVICE, json_serializer=_redacted_json)
if TYPE_CHECKING:
    tracer: Tracer
else:
    tracer = _TracerOnFirstUse(SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
