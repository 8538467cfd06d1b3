"""`tdev chaos --faults N [--seed S] [--group K] [--json] [--fault-log FILE]`: N requests under faults.

Faults, at every step, each decided by (seed, the step's stable identity), so a seed replays its run:
- every function invocation (API, plan, run_agent, record_task_failure, aggregate, compensate, the
  outbox publisher, each queue consumer): an exception before the work (a throttled or timed-out
  invocation), a crash *after* the work (the effect is stored, the response is lost: the caller
  retries), now and then a hard error (the saga's compensation path), and duplicate deliveries (the
  same event handed to the function twice, as Lambda's at-least-once delivery may);
- inside the functions, AWS error responses from DynamoDB, SQS and EventBridge injected into the HTTP
  layer of every botocore client (`before-send`), so the SDK's own retries and the code's error
  handling both run: half are refused (nothing applied: throttling), half come after the service
  applied the request (a 5xx or a lost answer after the commit);
- the client side of the API: a lost response after the request was stored; the client retries with
  the same Idempotency-Key, as it must.

After the workflows end and the messaging has drained, dead letters are redriven with `tdev dlq`'s
code (what an operator does). Then everything is measured from the data against the plan: `lost` =
accepted requests that never reached a terminal status, planned tasks of a SUCCEEDED execution without
a stored result, results whose task activity was never applied (by its event id), outcomes never
notified, all not explained by a dead letter still left; `duplicated_effects` = effects applied more
than once (a notification or task activity counted twice, agent run statistics above the stored
results, a retried submission that created a second execution); `dead_lettered` = messages that reached
a DLQ, `recovered` = of those, applied after the redrive, `dead_letters_left` = still in a DLQ (the run
fails). The last line printed is the summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from tdev.errors import TransientError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TERMINAL = {"SUCCEEDED", "DEGRADED", "FAILED"}
REQUESTS = (
    "Design and implement a REST API for todo items, with unit tests",
    "Write a CLI that converts CSV files to JSON",
    "Review the security of the login endpoint and fix what you find",
    "Build a web page that lists the projects",
)
THROTTLES = {
    "dynamodb": ("ProvisionedThroughputExceededException", "ThrottlingException", "InternalServerError"),
    "sqs": ("RequestThrottled", "ServiceUnavailable"),
    "eventbridge": ("ThrottlingException", "InternalException"),
}


def injected_crash(message: str) -> TransientError:
    """The function did its work and then its invocation failed (the response never reached the caller).

    Reported as TransientError, the error name the workflow retries (as it retries Lambda's own
    service errors and throttling); a subclass would reach Step Functions under another name.
    """
    return TransientError(f"injected crash after the work: {message}")


def injected_timeout(message: str) -> TransientError:
    """The invocation failed before doing anything (throttled, timed out, container lost)."""
    return TransientError(f"injected failure before the work: {message}")


class InjectedHardError(RuntimeError):
    """A non-retryable failure: the request must fail cleanly (compensated), not hang."""


@dataclass
class FaultPlan:
    """Which fault hits which step: a pure function of (seed, the step's stable identity).

    A step is named by what it is, never by when it ran: the request (its correlation id, fixed by the
    client as `chaos-<seed>-r<n>`), the function, the task, the delivery attempt, the n-th AWS call of
    that invocation. Threads finishing in another order therefore meet the same faults at the same
    steps, and a seed replays its run.
    """

    seed: int
    before: float = 0.08  # exception before the work
    after: float = 0.05  # crash after the work
    hard: float = 0.01  # non-retryable error (saga path); only for workflow steps
    duplicate: float = 0.05  # same event delivered twice
    aws_error: float = 0.03  # per AWS HTTP request made by the functions
    aws_applied: float = 0.5  # share of AWS errors that come after the service applied the request
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.hits: list[str] = []

    def roll(self, probability: float, kind: str, step: str) -> bool:
        if probability <= 0:
            return False
        hit = _fraction(self.seed, kind, step) < probability
        if hit:
            with self._lock:
                self.injected[kind] += 1
                self.hits.append(f"{kind}@{step}")
        return hit

    def choice(self, options: tuple[str, ...], step: str) -> str:
        return options[int(_fraction(self.seed, "choice", step) * len(options))]

    def fingerprint(self) -> str:
        """A digest of every fault and where it hit: equal for two runs that met the same faults."""
        with self._lock:
            hits = sorted(self.hits)
        return hashlib.sha256("\n".join(hits).encode()).hexdigest()[:16]


def _fraction(seed: int, kind: str, step: str) -> float:
    digest = hashlib.blake2b(f"{seed}\x1f{kind}\x1f{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class _Current(threading.local):
    """The invocation running on this thread (a handler's AWS calls are named after it)."""

    def __init__(self) -> None:
        self.steps: list[list[Any]] = []  # [step name, Counter of AWS requests made so far, by kind]


class ChaosInjector:
    """Wraps a LocalRuntime's invocations and the functions' botocore clients with the fault plan."""

    WORKFLOW_STEPS = {"plan_request", "run_agent", "record_task_failure", "aggregate_results", "compensate"}

    def __init__(self, runtime: Any, plan: FaultPlan) -> None:
        self.runtime = runtime
        self.plan = plan
        self.current = _Current()
        self._original_invoke = runtime.invoke
        self._undo: list[Any] = []
        self._attempts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def install(self) -> None:
        import botocore.session
        from moto.core.botocore_stubber import BotocoreStubber

        from tdev import aws

        self.runtime.fault_hook = self.before_invocation
        self.runtime.invoke = self.invoke
        original_create = botocore.session.Session.create_client
        injector = self

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original_create(session, *args, **kwargs)
            client.meta.events.register_first("before-send", injector.aws_error)
            return client

        botocore.session.Session.create_client = create_client
        self._undo.append(lambda: setattr(botocore.session.Session, "create_client", original_create))
        # botocore hands a request to every before-send handler, and the emulation (moto's stubber) is
        # one of them: it would apply a request whose injected error says it was not applied.
        original_stub = BotocoreStubber.__call__

        def stub(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            if getattr(request, "tdev_rejected", False):
                return None
            return original_stub(stubber, event_name, request, **kwargs)

        BotocoreStubber.__call__ = stub  # type: ignore[method-assign,assignment]
        self._undo.append(lambda: setattr(BotocoreStubber, "__call__", original_stub))
        aws.reset_clients()  # the functions' cached clients are made again, with the hook

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()
        self.runtime.fault_hook = None
        self.runtime.invoke = self._original_invoke

    # ------------------------------------------------------------------------------ step identity
    def step(self, name: str, event: dict[str, Any]) -> str:
        """`<function>|<what the event is about>|<attempt>`, the same in every run of the seed.

        An event that names no request (the sandbox's: files and a timeout) is named after the
        invocation that made the call, when there is one on this thread.
        """
        subject = _subject(name, event)
        if not subject.strip("|") and self.current.steps:
            subject = f"within {self.current.steps[-1][0]}"
        with self._lock:
            self._attempts[f"{name}|{subject}"] += 1
            attempt = self._attempts[f"{name}|{subject}"]
        return f"{name}|{subject}|{attempt}"

    # ------------------------------------------------------------------------------------ invocations
    def before_invocation(self, name: str, event: dict[str, Any]) -> None:
        step = self.step(f"{name}:dispatch", event)
        if name != "api" and self.plan.roll(self.plan.before, f"{name}:exception-before", step):
            raise injected_timeout(name)
        if name in self.WORKFLOW_STEPS - {"compensate"} and self.plan.roll(
            self.plan.hard, f"{name}:hard-error", step
        ):
            raise InjectedHardError(f"injected: {name} failed for good")

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        step = self.step(name, event)
        duplicated = name != "api" and self.plan.roll(self.plan.duplicate, f"{name}:duplicate", step)
        result: Any = None
        for delivery in range(2 if duplicated else 1):
            self.current.steps.append([f"{step}|d{delivery}", Counter()])
            try:
                result = self._original_invoke(name, event)
            finally:
                self.current.steps.pop()
        if name != "api" and self.plan.roll(self.plan.after, f"{name}:crash-after-work", step):
            raise injected_crash(name)
        return result

    # ---------------------------------------------------------------------------------------- AWS
    def aws_error(self, request: Any, **kwargs: Any) -> Any:
        """An AWS error response for a request a function makes (botocore retries it like a real one).

        Two kinds: the service refused the request (throttled: nothing applied), or it applied the
        request and the answer was an error anyway (a 500 or a lost response after the commit).
        """
        if not self.current.steps:
            return None
        event_name = str(kwargs.get("event_name", ""))
        service = next((s for s in THROTTLES if f".{s}" in event_name), None)
        if service is None:
            return None
        if _clock_driven(request):
            return None
        frame = self.current.steps[-1]
        # Named by what is asked (operation and the keys it touches), counted per kind of request: a
        # call that a cache saved in one run (other requests warmed it) does not shift the others.
        what = f"{event_name.rsplit('.', 1)[-1]}|{_request_shape(request)}"
        frame[1][what] += 1
        step = f"{frame[0]}|{what}|{frame[1][what]}"
        if not self.plan.roll(self.plan.aws_error, f"aws:{service}", step):
            return None
        if self.plan.roll(self.plan.aws_applied, f"aws:{service}:applied-then-error", step):
            code = self.plan.choice(("InternalServerError", "ServiceUnavailable"), step)
        else:
            request.tdev_rejected = True  # the emulation must not apply it
            code = self.plan.choice(THROTTLES[service], step)
        return _error_response(request, service, code)


# What differs between two runs of a seed: uuids, hashes and random suffixes (hex runs of 8 or more,
# e.g. an idempotency key's payload digest), timestamps, long numbers.
_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)?"
    r"|\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b|(?<=#)(?=[0-9a-f]*\d)[0-9a-f]{8,}|\d{6,}"
)
_SHAPE_FIELDS = ("TableName", "Key", "QueueUrl", "EventBusName", "IndexName")


def _clock_driven(request: Any) -> bool:
    """A request a function makes because a clock says so, not because of its input: the RBAC role
    cache reads the roles' revision every 2 s and reloads the roles every 5 minutes. Whether a given
    invocation makes it depends on wall time, so no fault is injected there (nor counted)."""
    try:
        body = json.loads(request.body or b"{}")
    except (TypeError, ValueError):
        return False
    if not isinstance(body, dict):
        return False
    if body.get("Key") == {"PK": {"S": "ROLES"}, "SK": {"S": "REVISION"}}:
        return True
    return (body.get("ExpressionAttributeValues") or {}).get(":kind") == {"S": "ROLE"}


def _request_shape(request: Any) -> str:
    """The keys an AWS request touches, with ids and timestamps blanked (they differ between runs)."""
    try:
        body = json.loads(request.body or b"{}")
    except (TypeError, ValueError):
        return ""
    if not isinstance(body, dict):
        return ""
    parts: list[Any] = [body.get(f) for f in _SHAPE_FIELDS if f in body]
    item = body.get("Item")
    if isinstance(item, dict):
        parts.append({k: item.get(k) for k in ("PK", "SK", "id")})
    for action in body.get("TransactItems", []) or []:
        for operation in action.values():
            key = operation.get("Key") or {k: operation.get("Item", {}).get(k) for k in ("PK", "SK")}
            parts.append([operation.get("TableName"), key])
    for entry in body.get("Entries", []) or []:
        parts.append([entry.get("Source"), entry.get("DetailType")])
    return _UUID.sub("<id>", json.dumps(parts, sort_keys=True, default=str))


def _subject(name: str, event: dict[str, Any]) -> str:
    """What an event is about, in terms that do not change between runs (no uuids, no timestamps)."""
    if "Records" in event:  # a stream or queue batch: the messages it carries
        ids = sorted(filter(None, (_message_subject(r) for r in event["Records"])))
        return ",".join(ids) or f"records:{len(event['Records'])}"
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    correlation = str(event.get("correlation_id") or headers.get("x-correlation-id") or "")
    task = (event.get("task") or {}).get("task_id", "")
    if name in ("api", "authorizer"):
        return f"{correlation}|{event.get('httpMethod', '')}|{event.get('resource') or event.get('path', '')}"
    iteration = event.get("iteration")
    return f"{correlation}|{task}" + (f"|i{iteration}" if iteration is not None else "")


def _message_subject(record: dict[str, Any]) -> str | None:
    if "body" in record:  # SQS
        try:
            body = json.loads(record["body"])
        except ValueError:
            return None
        if isinstance(body, dict) and isinstance(body.get("detail"), dict):  # a whole bus event (progress)
            detail = body["detail"]
            data = detail.get("data") if isinstance(detail.get("data"), dict) else {}
            kind = body.get("detail-type")
            return f"{detail.get('correlationId')}:{kind}:{data.get('taskId', '')}:{data.get('status', '')}"
        return f"{body.get('correlationId')}:{body.get('type')}:{body.get('taskId', '')}:{body.get('status')}"
    image = (record.get("dynamodb") or {}).get("NewImage") or {}
    if image.get("entity", {}).get("S") != "OUTBOX" or record.get("eventName") != "INSERT":
        return None
    detail = json.loads(image.get("detail", {}).get("S", "{}"))
    data = detail.get("data", {})
    kind = image.get("detail_type", {}).get("S")
    return f"{detail.get('correlationId')}:{kind}:{data.get('taskId', '')}:{data.get('status', '')}"


def _error_response(request: Any, service: str, code: str) -> Any:
    from botocore.awsrequest import AWSResponse

    status = 400 if "Throttl" in code or "Exceeded" in code else 500
    body = json.dumps({"__type": code, "message": f"injected {code}"}).encode()

    class _Raw:
        def stream(self, **_: Any) -> Any:
            yield body

        def read(self, *_: Any, **__: Any) -> bytes:
            return body

    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-query-error": f"{code};Sender"}
    response = AWSResponse(request.url, status, headers, _Raw())
    response._content = body
    return response


# -------------------------------------------------------------------------------------------- run
@dataclass
class ChaosReport:
    requests: int = 0
    terminal: int = 0
    lost: int = 0
    duplicated_effects: int = 0
    dead_lettered: int = 0  # messages that reached a DLQ during the run
    recovered: int = 0  # of those, applied after the operator's redrive (`tdev dlq redrive`)
    dead_letters_left: int = 0  # still in a DLQ at the end: the run fails
    statuses: dict[str, int] = field(default_factory=dict)
    half_done: int = 0
    orphaned: int = 0  # never terminal, and no workflow behind it (its start was lost and not reconciled)
    stuck: int = 0  # never terminal, behind a workflow that has ended (a step failed with nothing to record)
    published_duplicates: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    fault_fingerprint: str = ""
    seconds: float = 0.0
    seed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated_effects == 0
            and self.terminal == self.requests
            and self.dead_letters_left == 0
            and self.orphaned == 0
            and self.stuck == 0
        )

    def summary(self) -> str:
        return (
            f"requests={self.requests} terminal={self.terminal} lost={self.lost} "
            f"duplicated_effects={self.duplicated_effects} dead_lettered={self.dead_lettered} "
            f"recovered={self.recovered} dead_letters_left={self.dead_letters_left} "
            f"orphaned={self.orphaned} stuck={self.stuck}"
        )


def submit_with_retries(
    invoke_api: Any, plan: FaultPlan, request: str, correlation_id: str, attempts: int = 10
) -> str:
    """A well-behaved client: one Idempotency-Key per request, retried on 5xx and on lost responses."""
    key = f"{correlation_id}-{uuid.uuid4()}"  # unique per run; faults are keyed on the correlation id
    execution_ids: set[str] = set()
    last: Any = None
    for attempt in range(attempts):
        step = f"client|{correlation_id}|{attempt}"
        try:
            if plan.roll(plan.before, "api:exception-before", step):
                raise injected_timeout("the API call")
            status, body = invoke_api(request, key, correlation_id)
            if plan.roll(plan.after, "api:response-lost", step):
                if status in (200, 202):
                    execution_ids.add(body["execution_id"])
                raise injected_crash("the API response was lost")
        except TransientError as exc:
            last = exc
            time.sleep(0.01 * (attempt + 1))
            continue
        if status in (200, 202):
            execution_ids.add(body["execution_id"])
            if len(execution_ids) != 1:
                raise AssertionError(f"one Idempotency-Key made several executions: {execution_ids}")
            return str(body["execution_id"])
        last = (status, body)
        if status < 500:
            raise RuntimeError(f"request rejected ({status}): {body}")
        time.sleep(0.01 * (attempt + 1))
    raise RuntimeError(f"the API did not accept the request after {attempts} attempts: {last}")


def run_chaos(
    requests: int,
    *,
    seed: int = 1,
    per_runtime: int = 20,
    timeout: float = 900.0,
    plan: FaultPlan | None = None,
    reconcile: bool = True,
    groups: Collection[int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ChaosReport:
    """Run `requests` requests under the fault plan, `per_runtime` at a time in a fresh local runtime.

    The emulated table snapshots itself for every transaction (moto's rollback copy), so its cost grows
    with the table; a fresh runtime per group of requests keeps each request's cost flat. Within a
    group, all requests are in flight at once.

    Group K holds requests `r{K*per_runtime}` to `r{(K+1)*per_runtime - 1}`, in a runtime of its own,
    and every fault is named after its request: `groups={K}` replays that group alone with the faults
    it met in the whole run (a failure at 200 replayed in one group's time). `progress` receives a line
    after each group.
    """
    plan = plan or FaultPlan(seed=seed)
    report = ChaosReport(seed=seed)
    started = time.monotonic()
    total_groups = -(-requests // per_runtime)
    for index in range(total_groups):
        if groups is not None and index not in groups:
            continue
        offset = index * per_runtime
        count = min(per_runtime, requests - offset)
        group_started = time.monotonic()
        _run_group(count, offset, seed, plan, report, timeout, reconcile)
        if progress is not None:
            progress(
                f"group {index}/{total_groups - 1} (r{offset}-r{offset + count - 1}) "
                f"{time.monotonic() - group_started:.0f} s, so far: {report.summary()}"
            )
    report.injected = dict(sorted(plan.injected.items()))
    report.fault_fingerprint = plan.fingerprint()
    report.seconds = round(time.monotonic() - started, 1)
    return report


REDRIVE_ROUNDS = 3


def _run_group(
    count: int,
    offset: int,
    seed: int,
    plan: FaultPlan,
    report: ChaosReport,
    timeout: float,
    reconcile: bool = True,
) -> None:
    from tdev_cli.runtime import LocalRuntime

    with LocalRuntime() as runtime:
        undo_replayable = _replayable(runtime)
        injector = ChaosInjector(runtime, plan)

        def invoke_api(request: str, key: str, correlation_id: str) -> tuple[int, Any]:
            return runtime.api(
                "POST",
                "/v1/requests",
                {"request": request, "project_id": f"chaos-{seed}"},
                headers={"Idempotency-Key": key, "X-Correlation-Id": correlation_id},
            )

        injector.install()
        try:
            correlations = [f"chaos-{seed}-r{offset + i}" for i in range(count)]
            accepted = [
                submit_with_retries(invoke_api, plan, REQUESTS[(offset + i) % len(REQUESTS)], correlations[i])
                for i in range(count)
            ]
            _wait(runtime, accepted, timeout)
            runtime.drain_messaging()
            dead_lettered = sum(_dead_letter_counts(runtime).values())
            report.dead_lettered += dead_lettered
            # What an operator does with dead letters: `tdev dlq redrive <queue>`, and again if needed.
            for _ in range(REDRIVE_ROUNDS):
                if not any(_dead_letter_counts(runtime).values()):
                    break
                _redrive(runtime)
                runtime.drain_messaging()
        finally:
            injector.uninstall()
            undo_replayable()
        runtime.drain_messaging()  # settle what the faults left in flight (nothing is re-sent)
        # The every-minute reconciler, as deployed: it starts a workflow whose start was lost and fails an
        # execution whose workflow ended without recording; then what it started runs to its end.
        if reconcile:
            runtime.reconcile(later_by=RECONCILE_AHEAD_SECONDS)
            _wait(runtime, accepted, timeout)
            runtime.drain_messaging()
        left = _measure(runtime, accepted, report, correlations)
        report.recovered += max(0, dead_lettered - left)


def _replayable(runtime: Any) -> Callable[[], None]:
    """What would make two runs of a seed meet different faults, set aside before any fault is injected.

    - Batches: which messages share an invocation depends on the order the concurrent workflows wrote
      the stream, so an invocation of several messages has no name that holds between runs. Lambda may
      hand over as few as one record per invocation (the stacks' sizes are maxima), and here it always
      does: each publisher or consumer invocation is about one message, named by it. Batches of
      several messages, partial batch failures and FIFO group skipping are proven by
      tests/unit/test_messaging.py.
    - First use: the built-in agents are stored by whichever request needs one first (a put that only
      that request makes); a deployed registry has them already, so they are stored before the run.
    - Agent history: the planner weighs each agent's past runs, and the runs of this group finish in
      thread order, so a later request could be planned with other agents (seed 7: a `review` task in
      one run, `security-review` in the other). The planner reads the history as it was when the group
      started. Returns the function that undoes this.
    """
    from unittest import mock

    from tdev import container
    from tdev.data.agents import AgentRepository

    runtime.messaging.stream_batch_size = 1
    runtime.messaging.queue_batch_size = 1
    registry = container.agents()
    registry.seed()
    at_start = registry.history(spec.name for spec in registry.list())
    patcher = mock.patch.object(AgentRepository, "history", lambda self, names: at_start)
    patcher.start()
    return patcher.stop


def _workflow_state(runtime: Any, execution_id: str) -> str:
    """The workflow's status, or NONE when no workflow was ever started for the execution."""
    from botocore.exceptions import ClientError

    try:
        return str(runtime.workflow_status(execution_id))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return "NONE"
        raise


def _still_running(runtime: Any, execution_ids: list[str]) -> list[str]:
    return [e for e in execution_ids if _workflow_state(runtime, e) == "RUNNING"]


def _wait(runtime: Any, execution_ids: list[str], timeout: float) -> None:
    """Until every workflow has ended, or none has ended for `timeout` seconds.

    The deadline moves with progress: on a loaded machine a group's workflows may together take longer
    than `timeout` while each keeps finishing, and a fixed deadline would count them as never terminal
    (a "loss" the machine's load decided, not the seed).
    """
    pending = list(execution_ids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        still = _still_running(runtime, pending)
        if len(still) < len(pending):
            deadline = time.monotonic() + timeout
        pending = still
        time.sleep(0.1)


# How far ahead the run's closing reconciler pass looks: past its one-minute threshold, as the schedule's
# next ticks would, so a start lost to a fault is started (or failed) as deployed.
RECONCILE_AHEAD_SECONDS = 120.0


def _measure(
    runtime: Any, accepted: list[str], report: ChaosReport, correlations: list[str] | None = None
) -> int:
    """Count every expected effect of the plan by its own identity; returns the dead letters left.

    Expected effects come from the plan (the execution's planned tasks), not from what was stored:
    every planned task of a SUCCEEDED execution has exactly one stored successful result, every stored
    result exactly one applied task activity (its APPLIED marker), every terminal execution exactly
    one outcome notification. Problems name the request (`chaos-<seed>-r<n>`, which `--group` replays)
    beside its execution id.
    """
    import boto3
    from boto3.dynamodb.conditions import Key

    from tdev.data.executions import fact_event_id, from_item
    from tdev.messaging.consumers import applied_key

    table = boto3.resource("dynamodb", region_name="us-east-1").Table("tdev-local")
    report.requests += len(accepted)
    if len(set(accepted)) != len(accepted):
        report.duplicated_effects += len(accepted) - len(set(accepted))
        report.problems.append("two requests were given the same execution")
    dead = _read_dead_letters(runtime)
    left = sum(len(v) for v in dead.values())
    report.dead_letters_left += left
    dead_bodies = [m for bodies in dead.values() for m in bodies]
    for body in dead_bodies:
        report.problems.append(f"dead letter left: {json.dumps(body, sort_keys=True)[:160]}")

    def dead_letter_for(execution_id: str, task_id: str | None = None) -> bool:
        return any(
            m.get("executionId") == execution_id and (task_id is None or m.get("taskId") == task_id)
            for m in dead_bodies
        )

    def applied(consumer: str, event_id: str) -> bool:
        key = applied_key(consumer, event_id)
        return "Item" in table.get_item(Key=key, ConsistentRead=True)

    names = dict(zip(accepted, correlations or [], strict=False))

    def who(execution_id: str) -> str:
        return f"{names[execution_id]} {execution_id}" if execution_id in names else execution_id

    statuses: Counter[str] = Counter()
    succeeded_results: Counter[str] = Counter()
    for execution_id in accepted:
        items = [from_item(i) for i in _query_all(table, Key("PK").eq(f"EXECUTION#{execution_id}"))]
        head = next((i for i in items if i["SK"] == "EXECUTION"), None)
        if head is None:
            report.lost += 1
            report.problems.append(f"{who(execution_id)}: accepted but not stored")
            continue
        status = str(head["status"])
        statuses[status] += 1
        if status not in TERMINAL:
            report.lost += 1
            workflow = _workflow_state(runtime, execution_id)
            if workflow == "NONE":
                report.orphaned += 1
                report.problems.append(
                    f"{who(execution_id)}: orphaned: {status} and no workflow was ever started"
                )
            elif workflow != "RUNNING":
                report.stuck += 1
                report.problems.append(
                    f"{who(execution_id)}: stuck: {status}, but its workflow ended {workflow}"
                )
            else:
                report.problems.append(
                    f"{who(execution_id)}: never terminal ({status}, workflow still running)"
                )
            continue
        report.terminal += 1
        planned: dict[str, Any] = head.get("tasks", {}) or {}
        results = {i["SK"].removeprefix("TASK#"): i for i in items if i["SK"].startswith("TASK#")}
        if not planned and status == "SUCCEEDED":  # succeeded with no work to show: lost
            report.lost += 1
            report.problems.append(f"{who(execution_id)}: SUCCEEDED without a plan")
        # Failed (or cancelled) without a plan is what a request whose planning failed does (an injected
        # hard error in plan_request): its outcome is checked below like any other.
        for task_id in sorted(set(results) - set(planned)):
            report.duplicated_effects += 1
            report.problems.append(f"{who(execution_id)}: result of {task_id}, a task that was never planned")
        markers = 0
        for task_id, state in sorted(planned.items()):
            result = results.get(task_id)
            if result is None:
                if status == "SUCCEEDED" or state.get("status") in {"SUCCEEDED", "FAILED"}:
                    report.lost += 1
                    report.problems.append(
                        f"{who(execution_id)}: planned task {task_id} ({state.get('status')}) "
                        "has no stored result"
                    )
                continue
            if status == "SUCCEEDED" and result["status"] != "SUCCEEDED":
                report.lost += 1
                report.problems.append(
                    f"{who(execution_id)}: SUCCEEDED, but task {task_id} stored {result['status']}"
                )
            if result["status"] == "SUCCEEDED":
                succeeded_results[result["result"]["agent"]] += 1
            facts = {
                s: applied("task-activity", fact_event_id(execution_id, "task", task_id, s))
                for s in ("SUCCEEDED", "FAILED")
            }
            markers += sum(facts.values())
            if not facts[result["status"]] and not dead_letter_for(execution_id, task_id):
                report.lost += 1
                report.problems.append(f"{who(execution_id)}: activity of task {task_id} never applied")
        announced = int(head.get("tasks_announced", 0))
        if announced > markers:
            report.duplicated_effects += announced - markers
            report.problems.append(
                f"{who(execution_id)}: {announced} task activities applied for {markers} events"
            )
        notifications = int(head.get("notifications_sent", 0))
        if notifications > 1:
            report.duplicated_effects += notifications - 1
            report.problems.append(f"{who(execution_id)}: notified {notifications} times")
        if notifications == 0 and not dead_letter_for(execution_id):
            report.lost += 1
            report.problems.append(f"{who(execution_id)}: outcome never notified nor dead-lettered")
        if status == "FAILED":
            open_tasks = [t for t, s in planned.items() if s["status"] in {"SUCCEEDED", "RUNNING", "PENDING"}]
            if open_tasks:
                report.half_done += 1
                report.lost += 1
                report.problems.append(f"{who(execution_id)}: FAILED with uncompensated tasks {open_tasks}")
    for agent, count in sorted(succeeded_results.items()):
        stats = table.get_item(Key={"PK": f"AGENT#{agent}", "SK": "STATS"}).get("Item") or {}
        runs = int(stats.get("successes", 0))
        if runs > count:
            report.duplicated_effects += runs - count
            report.problems.append(f"agent {agent}: {runs} successful runs counted for {count} results")
    for status, count in statuses.items():
        report.statuses[status] = report.statuses.get(status, 0) + count
    return left


def _query_all(table: Any, condition: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"KeyConditionExpression": condition, "ConsistentRead": True}
    while True:
        page = table.query(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _dead_letter_queues() -> list[str]:
    from tdev.messaging import queues as q

    return [spec.dlq_name for spec in q.QUEUES] + [q.OUTBOX_FAILURES]


def _dead_letter_counts(runtime: Any) -> dict[str, int]:
    return {name: runtime.messaging.queue_depth(name) for name in _dead_letter_queues()}


def _redrive(runtime: Any) -> None:
    """`tdev dlq redrive` for every queue that has dead letters (the operator's command, same code)."""
    import boto3

    from tdev.messaging import queues as q
    from tdev_cli.dlq import DeadLetters

    dead_letters = DeadLetters(boto3.client("sqs", region_name="us-east-1"))
    for spec in q.QUEUES:
        if dead_letters.count(spec):
            dead_letters.redrive(spec)


def _read_dead_letters(runtime: Any) -> dict[str, list[dict[str, Any]]]:
    """Every message left in every DLQ, read to the last one (this runtime is about to be discarded).

    Each message is received and deleted: a FIFO queue hands out no further message of a group while
    one is in flight, so reading without deleting stopped at the first batch of ten.
    """
    import boto3

    sqs = boto3.client("sqs", region_name="us-east-1")
    found: dict[str, list[dict[str, Any]]] = {}
    for name in _dead_letter_queues():
        url = runtime.messaging.queue_urls[name]
        bodies: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get(
                "Messages", []
            )
            if not messages:
                break
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                body = json.loads(message["Body"])
                if "dynamodb" in body:  # a stream record the publisher gave up on
                    image = body["dynamodb"].get("NewImage", {})
                    detail = json.loads(image.get("detail", {}).get("S", "{}"))
                    body = {
                        "eventId": detail.get("eventId"),
                        "executionId": detail.get("data", {}).get("executionId"),
                        "taskId": detail.get("data", {}).get("taskId"),
                    }
                bodies.append(body)
        found[name] = bodies
    return found


# -------------------------------------------------------------------------------------------- CLI
def register(commands: Any) -> None:
    chaos = commands.add_parser("chaos", help="run requests under injected faults and count what was lost")
    chaos.add_argument("--faults", type=int, required=True, metavar="N", help="how many requests to run")
    chaos.add_argument("--seed", type=int, default=1, help="the fault plan's random seed")
    chaos.add_argument(
        "--per-runtime", type=int, default=20, help="requests per fresh local runtime (all in flight at once)"
    )
    chaos.add_argument(
        "--group",
        type=int,
        action="append",
        default=None,
        metavar="K",
        help="replay group K alone (requests r{K*P}.., P = --per-runtime) with the faults it met; repeatable",
    )
    chaos.add_argument("--json", action="store_true", help="print the report as JSON before the summary")
    chaos.add_argument(
        "--fault-log", default=None, metavar="FILE", help="write every fault and the step it hit, sorted"
    )
    chaos.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    if args.faults < 1 or args.per_runtime < 1:
        print("tdev chaos: --faults and --per-runtime must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    groups = -(-args.faults // args.per_runtime)
    if args.group is not None and not all(0 <= g < groups for g in args.group):
        print(f"tdev chaos: --group must be between 0 and {groups - 1} for this run", file=sys.stderr)
        return EXIT_USAGE
    from tdev_cli.function_logs import functions_output

    def progress(line: str) -> None:  # stderr: the functions' output (stdout) goes to the log file
        print(line, file=sys.stderr, flush=True)

    plan = FaultPlan(seed=args.seed)
    with functions_output(".tdev/logs", "chaos"):
        report = run_chaos(
            args.faults,
            seed=args.seed,
            per_runtime=args.per_runtime,
            plan=plan,
            groups=set(args.group) if args.group is not None else None,
            progress=progress,
        )
    if args.fault_log:
        with open(args.fault_log, "w", encoding="utf-8") as log:
            log.writelines(f"{hit}\n" for hit in sorted(plan.hits))
    if args.json:
        data = asdict(report)
        print(json.dumps(data, indent=2))
    else:
        print(f"seed={report.seed} seconds={report.seconds} statuses={report.statuses}")
        print("injected: " + ", ".join(f"{k}={v}" for k, v in report.injected.items()))
        print(f"faults={sum(report.injected.values())} fault_fingerprint={report.fault_fingerprint}")
        for problem in report.problems[:20]:
            print(f"problem: {problem}")
    print(report.summary())
    return EXIT_OK if report.holds else EXIT_FAILED
