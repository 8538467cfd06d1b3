"""Process-wide domain services built from the settings on first use (one set per Lambda container).

The composition root of the core: repositories, the cipher and the sealer. The rooms that build services
of their own on top of these (`tdev.security.services`, `tdev.sessions.service`) register their `reset` in
`tdev.resets`, so `reset()` forgets everything without this module importing them back.
"""

from __future__ import annotations

from functools import lru_cache

from tdev import aws, cache, caching, resets
from tdev.agents.catalog import DEFAULT_AGENTS
from tdev.crypto import EnvelopeCipher
from tdev.data.agents import AgentRepository, forget_checked_catalogs
from tdev.data.execution_cache import EXECUTION_CACHE
from tdev.data.executions import ExecutionRepository
from tdev.data.fields import FieldSealer
from tdev.data.incidents import ErrorRepository
from tdev.data.verify import VerifyRepository
from tdev.errors import ConfigurationError
from tdev.settings import get_settings
from tdev.write_behind import Record, WriteBehind, sqs_dead_letter


@lru_cache(maxsize=1)
def executions() -> ExecutionRepository:
    settings = get_settings()
    return ExecutionRepository(
        settings.table_name,
        retention_days=settings.execution_retention_days,
        idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
        cipher=cipher() if settings.kms_key_id else None,  # request texts and outputs encrypted at rest
        # Views (the CLI's polling path) through the read cache over the shared Redis, when there is one.
        cache=caching.named(EXECUTION_CACHE) if settings.redis_url else None,
    )


@lru_cache(maxsize=1)
def cipher() -> EnvelopeCipher:
    """Envelope encryption under the deployment's customer-managed key (KMS_KEY_ID)."""
    key_id = get_settings().kms_key_id
    if not key_id:
        raise ConfigurationError("KMS_KEY_ID is not set: field encryption needs the data key's CMK")
    return EnvelopeCipher(key_id)


@lru_cache(maxsize=1)
def sealer() -> FieldSealer:
    """Field encryption of the single table's sensitive texts (requests, outputs, chat, memory)."""
    settings = get_settings()
    return FieldSealer(cipher() if settings.kms_key_id else None, settings.table_name)


@lru_cache(maxsize=1)
def verify_records() -> VerifyRepository:
    settings = get_settings()
    return VerifyRepository(settings.table_name, retention_days=settings.execution_retention_days)


REGISTRY_CACHE = "registry"


@lru_cache(maxsize=1)
def agents() -> AgentRepository:
    settings = get_settings()
    # Every workflow step reads its agent's spec: through the read cache over the shared Redis, if any.
    return AgentRepository(
        settings.table_name,
        DEFAULT_AGENTS,
        cache=caching.named(REGISTRY_CACHE) if settings.redis_url else None,
    )


AGENT_RUNS_QUEUE = "agent-runs"


@lru_cache(maxsize=1)
def run_statistics() -> WriteBehind:
    """Agent run counters (every task run adds one), written behind: buffered in Redis, applied to the table
    at the end of the invocation, dead-lettered to TDEV_WRITE_BEHIND_DLQ_URL after the retries."""
    dlq = get_settings().write_behind_dlq_url
    return WriteBehind(
        AGENT_RUNS_QUEUE, _record_run, dead_letter=sqs_dead_letter(dlq, AGENT_RUNS_QUEUE) if dlq else None
    )


def _record_run(record: Record) -> None:
    """One buffered run applied: counted once per run id, so a flush repeated after a crash counts nothing
    twice (`AgentRepository.record_run`)."""
    agents().record_run(
        str(record["agent"]),
        str(record["run_id"]),
        succeeded=bool(record["succeeded"]),
        duration_ms=int(record["duration_ms"]),
        cpu_ms=int(record.get("cpu_ms", 0)),
        memory_permille=int(record.get("memory_permille", 0)),
    )


@lru_cache(maxsize=1)
def errors() -> ErrorRepository:
    """Error groups (tdev.incidents): signatures, counts per window, resolutions."""
    return ErrorRepository(get_settings().table_name)


def reset() -> None:
    """Forget settings, clients and repositories (tests and the local runtime change the environment)."""
    get_settings.cache_clear()
    aws.reset_clients()
    cache.reset()
    executions.cache_clear()
    agents.cache_clear()
    run_statistics.cache_clear()
    forget_checked_catalogs()  # a new (emulated) table is checked again
    verify_records.cache_clear()
    errors.cache_clear()
    cipher.cache_clear()
    sealer.cache_clear()
    resets.forget_all()
