"""Powertools utilities, created once per process and shared by every handler and domain module."""

from __future__ import annotations

import os
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

# Each function's stack sets POWERTOOLS_SERVICE_NAME (tdev-api, tdev-run-agent, ...); the fallback
# keeps logs attributable when the code runs elsewhere (local runtime, tests).
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "t-developer")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "TDeveloper")

# Read-only routes and steps publish no application metric on purpose; the warning would be noise.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
