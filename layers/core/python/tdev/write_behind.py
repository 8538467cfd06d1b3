"""Write-behind (spec 1.13) for what every run writes: buffered in Redis, applied to the table in batches.

A record is acknowledged only once it is durable outside the process: `submit` RPUSHes it onto the
queue's list in the shared Redis (replicated, in the cluster) and only then returns. A process that
crashes after that loses nothing: the list is drained by the next flush, in any container. Redis
unreachable (or not configured): the record is applied to the table at once (slower, logged), and an
error there is the caller's, so nothing is acknowledged that is not stored.

Keys (cluster-safe: both share the hash tag `{wb:<name>}`, so the trim script is one slot; no KEYS/SCAN):
    tdev:{wb:<name>}:pending   list of JSON records, appended by `submit`, trimmed from the head by a flush
    tdev:{wb:<name>}:lock      the flusher's lease (SET NX PX): one flusher per queue at a time

A flush (at the end of every invocation, and from `submit` when the list reaches `flush_threshold`) takes
the lease, reads up to `batch_size` records from the head, applies each (retried with back-off), and trims
the handled prefix in a script that trims only if the lease is still its own. A record that fails every
retry is sent to the dead-letter queue (SQS) with its error, then trimmed; if it cannot be dead-lettered
either it stays at the head and the flush stops (kept, retried by the next flush). A flush that lost its
lease trims nothing: the records are applied again by the next holder, so `apply` must be idempotent
(agent run statistics are: each run id is counted once, `AgentRepository.record_run`).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tdev import cache, resets
from tdev.errors import ConfigurationError
from tdev.observability import logger

Record = dict[str, Any]

BATCH_SIZE = 100
FLUSH_THRESHOLD = 200  # a submit that makes the list this long flushes at once
RETRIES = 3
BACKOFF_SECONDS = 0.05
LOCK_LEASE_MS = 60_000  # outlives a batch of retried writes; a flusher that dies frees it after this

_TRIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if tonumber(ARGV[2]) > 0 then redis.call('LTRIM', KEYS[2], ARGV[2], -1) end
redis.call('DEL', KEYS[1])
return tonumber(ARGV[2])
"""


@dataclass
class FlushReport:
    applied: int = 0
    dead_lettered: int = 0
    kept: int = 0  # records left in Redis (not yet reached, or neither applied nor dead-lettered)


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.exceptions.RedisError, OSError)


class WriteBehind:
    """One write-behind queue. `apply(record)` writes one record to the table (idempotently);
    `dead_letter(record, error)` sends a record that failed every retry to the dead-letter queue."""

    def __init__(
        self,
        name: str,
        apply: Callable[[Record], object],
        *,
        dead_letter: Callable[[Record, str], None] | None = None,
        redis: Callable[[], Any] = cache.redis_client,
        batch_size: int = BATCH_SIZE,
        flush_threshold: int = FLUSH_THRESHOLD,
        retries: int = RETRIES,
        backoff_seconds: float = BACKOFF_SECONDS,
        lock_lease_ms: int = LOCK_LEASE_MS,
    ) -> None:
        self.name = name
        self._apply, self._dead_letter, self._redis = apply, dead_letter, redis
        self.batch_size, self.flush_threshold = batch_size, flush_threshold
        self.retries, self.backoff_seconds, self.lock_lease_ms = retries, backoff_seconds, lock_lease_ms
        self._trim: tuple[Any, Any] | None = None
        self.direct_writes = 0  # records applied at once because Redis was not there

    @property
    def pending_key(self) -> str:
        return f"tdev:{{wb:{self.name}}}:pending"

    @property
    def lock_key(self) -> str:
        return f"tdev:{{wb:{self.name}}}:lock"

    # ---------------------------------------------------------------------------------------- submit
    def submit(self, record: Record) -> bool:
        """Acknowledge `record` once it is durable: True when buffered in Redis, False when written straight
        to the table (Redis unreachable or unconfigured). Raises only when it could be stored nowhere."""
        body = json.dumps(record, sort_keys=True, default=str)
        try:
            length = int(self._redis().rpush(self.pending_key, body))
        except ConfigurationError:  # no Redis in this deployment: every write goes to the table
            self._apply_directly(record)
            return False
        except _redis_errors() as exc:
            logger.warning(
                "write-behind buffer unavailable: writing to the table",
                extra={"queue": self.name, "error": f"{type(exc).__name__}: {exc}"[:300]},
            )
            self._apply_directly(record)
            return False
        with _lock:
            _touched.add(self)
        if length >= self.flush_threshold:
            self.flush()
        return True

    def _apply_directly(self, record: Record) -> None:
        self.direct_writes += 1
        error = self._try_apply(record)
        if error is not None:
            raise error

    def _try_apply(self, record: Record) -> Exception | None:
        """Apply with retries; the last error when every attempt failed."""
        last: Exception | None = None
        for attempt in range(self.retries):
            try:
                self._apply(record)
                return None
            except Exception as exc:  # any failure of the write is retried, then dead-lettered
                last = exc
                if attempt < self.retries - 1:
                    time.sleep(self.backoff_seconds * (2**attempt))
        return last

    # ----------------------------------------------------------------------------------------- flush
    def flush(self) -> FlushReport:
        """Drain the list (every container's acknowledged records) to the table, batch by batch.

        Never raises: what it could not handle stays in Redis for the next flush."""
        report = FlushReport()
        try:
            client = self._redis()
        except Exception as exc:  # unconfigured or unreachable: nothing can be buffered there either
            logger.debug("write-behind flush skipped", extra={"queue": self.name, "error": str(exc)[:200]})
            return report
        try:
            while True:
                handled, read, stuck = self._flush_batch(client, report)
                if handled < 0 or stuck or read < self.batch_size:
                    break
            report.kept = int(client.llen(self.pending_key))
        except _redis_errors() as exc:
            logger.warning(
                "write-behind flush interrupted: records stay buffered",
                extra={"queue": self.name, "error": f"{type(exc).__name__}: {exc}"[:300]},
            )
        if report.applied or report.dead_lettered:
            logger.info(
                "write-behind flushed",
                extra={
                    "queue": self.name,
                    "applied": report.applied,
                    "dead_lettered": report.dead_lettered,
                    "kept": report.kept,
                },
            )
        return report

    def _flush_batch(self, client: Any, report: FlushReport) -> tuple[int, int, bool]:
        """(records trimmed or -1 when another flusher holds the lease, records read, stopped on one)."""
        token = secrets.token_hex(8)
        if not client.set(self.lock_key, token, nx=True, px=self.lock_lease_ms):
            return -1, 0, False
        handled, stuck, items = 0, False, []
        try:
            items = client.lrange(self.pending_key, 0, self.batch_size - 1)
            for raw in items:
                outcome = self._handle(raw)
                if outcome is None:
                    stuck = True
                    break
                handled += 1
                if outcome:
                    report.applied += 1
                else:
                    report.dead_lettered += 1
        finally:
            trim = self._trim_script(client)
            trimmed = int(trim(keys=[self.lock_key, self.pending_key], args=[token, handled]))
        if trimmed < 0:  # the lease lapsed during the batch: the next holder applies these again
            logger.warning("write-behind lease lapsed during a flush", extra={"queue": self.name})
        return trimmed, len(items), stuck

    def _handle(self, raw: str) -> bool | None:
        """True: applied; False: dead-lettered; None: neither (kept in Redis)."""
        error: Exception | None
        try:
            record = json.loads(raw)
        except ValueError:
            record, error = {"raw": raw}, ValueError("not a JSON record")
        else:
            error = self._try_apply(record)
            if error is None:
                return True
        reason = f"{type(error).__name__}: {error}"[:1000]
        if self._dead_letter is None:
            logger.error("write-behind record failed; no dead-letter queue: kept", extra={"queue": self.name})
            return None
        try:
            self._dead_letter(record, reason)
        except Exception as exc:  # cannot dead-letter either: keep it buffered
            logger.error(
                "write-behind record could not be dead-lettered: kept",
                extra={"queue": self.name, "error": str(exc)[:300]},
            )
            return None
        logger.error("write-behind record dead-lettered", extra={"queue": self.name, "reason": reason})
        return False

    def _trim_script(self, client: Any) -> Any:
        if self._trim is None or self._trim[0] is not client:
            self._trim = (client, client.register_script(_TRIM))
        return self._trim[1]


def sqs_dead_letter(queue_url: str, queue: str) -> Callable[[Record, str], None]:
    """A `dead_letter` that sends the record and its error to the SQS queue at `queue_url`."""

    def send(record: Record, error: str) -> None:
        from tdev import aws

        body = json.dumps({"queue": queue, "record": record, "error": error}, sort_keys=True, default=str)
        aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)

    return send


# ------------------------------------------------------------------------------ the process's queues
_touched: set[WriteBehind] = set()  # queues this process buffered into since the last flush_all
_lock = threading.Lock()


def flush_all() -> None:
    """The end of an invocation: flush every queue this process buffered into (a frozen or reclaimed
    container must not hold others' statistics back; what it buffered is in Redis either way)."""
    with _lock:
        queues = list(_touched)
        _touched.clear()
    for queue in queues:
        queue.flush()


@resets.on_reset
def reset() -> None:
    with _lock:
        _touched.clear()
