"""Lazily created, cached AWS clients: the only place the domain builds boto3 clients.

Clients are created on first use (not at import) so that cold starts stay short and tests or the
local runtime can put moto or endpoint overrides in place first; `reset_clients()` drops the cache.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Timeouts from the spec (connect 3 s, read 5 s) with adaptive retries and keep-alive.
_CONFIG = Config(
    connect_timeout=3,
    read_timeout=5,
    retries={"max_attempts": 5, "mode": "adaptive"},
    tcp_keepalive=True,
)


@cache
def client(service: str) -> Any:
    """A boto3 client for `service`, shared by everything in this process."""
    return boto3.session.Session().client(service, config=_CONFIG)


@cache
def slow_client(service: str, read_timeout: int) -> Any:
    """A client for calls that legitimately take long (a synchronous invocation of the test sandbox)."""
    config = _CONFIG.merge(Config(read_timeout=read_timeout, retries={"max_attempts": 1, "mode": "standard"}))
    return boto3.session.Session().client(service, config=config)


@cache
def presigning_client(service: str) -> Any:
    """A client whose presigned URLs are SigV4 (botocore may presign S3 URLs as SigV2, which S3 refuses
    for KMS-encrypted objects such as the workspaces')."""
    return boto3.session.Session().client(service, config=_CONFIG.merge(Config(signature_version="s3v4")))


@cache
def endpoint_client(service: str, endpoint_url: str) -> Any:
    """A client for an endpoint that is part of a deployment (the WebSocket API's management endpoint)."""
    return boto3.session.Session().client(service, endpoint_url=endpoint_url, config=_CONFIG)


_local = threading.local()
_generation = 0  # bumped by reset_clients(), so every thread drops resources made before it


def table(name: str) -> Any:
    """A DynamoDB Table resource (the higher-level API the repositories use).

    Resources are not thread-safe (clients are), so each thread gets its own; a Lambda container
    has one thread, the local runtime runs Map iterations on several.
    """
    if getattr(_local, "generation", None) != _generation:
        _local.generation, _local.tables = _generation, {}
    tables: dict[str, Any] = _local.tables
    if name not in tables:
        tables[name] = boto3.session.Session().resource("dynamodb", config=_CONFIG).Table(name)
    return tables[name]


def reset_clients() -> None:
    global _generation
    client.cache_clear()
    slow_client.cache_clear()
    presigning_client.cache_clear()
    endpoint_client.cache_clear()
    _generation += 1
