"""`tdev chaos --faults N [--seed S] [--json]`: N requests through the local runtime under injected faults.

Faults, at every step (seeded, so a run can be repeated):
- every function invocation (API, plan, run_agent, record_task_failure, aggregate, compensate, the
  outbox publisher, each queue consumer): an exception before the work (a throttled or timed-out
  invocation), a crash *after* the work (the effect is stored, the response is lost: the caller
  retries), now and then a hard error (the saga's compensation path), and duplicate deliveries (the
  same event handed to the function twice, as Lambda's at-least-once delivery may);
- inside the functions, AWS error responses from DynamoDB, SQS and EventBridge (throttling,
  ProvisionedThroughputExceeded, ServiceUnavailable) injected into the HTTP layer of every botocore
  client (`before-send`), so the SDK's own retries and the code's error handling both run;
- the client side of the API: a lost response after the request was stored; the client retries with
  the same Idempotency-Key, as it must.

Everything is then measured from the data: `lost` = accepted requests that never reached a terminal
status, plus expected message effects (notification, task activity) neither applied nor dead-lettered;
`duplicated_effects` = effects applied more than once (notifications or task activity counted twice
on an execution, agent run statistics above the stored results, a retried submission that created a
second execution); `dead_lettered` = messages in the DLQs. The last line printed is the summary.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter
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
    seed: int
    before: float = 0.08  # exception before the work
    after: float = 0.05  # crash after the work
    hard: float = 0.01  # non-retryable error (saga path); only for workflow steps
    duplicate: float = 0.05  # same event delivered twice
    aws_error: float = 0.03  # per AWS HTTP request made by the functions
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def roll(self, probability: float, kind: str) -> bool:
        with self._lock:
            hit = self._random.random() < probability
            if hit:
                self.injected[kind] += 1
            return hit

    def choice(self, options: tuple[str, ...]) -> str:
        with self._lock:
            return self._random.choice(options)


class _InHandler(threading.local):
    depth = 0


class ChaosInjector:
    """Wraps a LocalRuntime's invocations and the functions' botocore clients with the fault plan."""

    WORKFLOW_STEPS = {"plan_request", "run_agent", "record_task_failure", "aggregate_results", "compensate"}

    def __init__(self, runtime: Any, plan: FaultPlan) -> None:
        self.runtime = runtime
        self.plan = plan
        self.in_handler = _InHandler()
        self._original_invoke = runtime.invoke
        self._undo: list[Any] = []

    def install(self) -> None:
        import botocore.session

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
        aws.reset_clients()  # the functions' cached clients are made again, with the hook

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()
        self.runtime.fault_hook = None
        self.runtime.invoke = self._original_invoke

    # ------------------------------------------------------------------------------------ invocations
    def before_invocation(self, name: str, event: dict[str, Any]) -> None:
        if name != "api" and self.plan.roll(self.plan.before, f"{name}:exception-before"):
            raise injected_timeout(name)
        if name in self.WORKFLOW_STEPS - {"compensate"} and self.plan.roll(
            self.plan.hard, f"{name}:hard-error"
        ):
            raise InjectedHardError(f"injected: {name} failed for good")

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        deliveries = 2 if name != "api" and self.plan.roll(self.plan.duplicate, f"{name}:duplicate") else 1
        result: Any = None
        for _ in range(deliveries):
            self.in_handler.depth += 1
            try:
                result = self._original_invoke(name, event)
            finally:
                self.in_handler.depth -= 1
        if name != "api" and self.plan.roll(self.plan.after, f"{name}:crash-after-work"):
            raise injected_crash(name)
        return result

    # ---------------------------------------------------------------------------------------- AWS
    def aws_error(self, request: Any, **kwargs: Any) -> Any:
        """An AWS error response for a request a function makes (botocore retries it like a real one)."""
        if self.in_handler.depth <= 0:
            return None
        event_name = str(kwargs.get("event_name", ""))
        service = next((s for s in THROTTLES if f".{s}" in event_name), None)
        if service is None or not self.plan.roll(self.plan.aws_error, f"aws:{service}"):
            return None
        code = self.plan.choice(THROTTLES[service])
        return _error_response(request, service, code)


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
    dead_lettered: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    half_done: int = 0
    published_duplicates: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    seed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return self.lost == 0 and self.duplicated_effects == 0 and self.terminal == self.requests

    def summary(self) -> str:
        return (
            f"requests={self.requests} terminal={self.terminal} lost={self.lost} "
            f"duplicated_effects={self.duplicated_effects} dead_lettered={self.dead_lettered}"
        )


def submit_with_retries(invoke_api: Any, plan: FaultPlan, request: str, attempts: int = 10) -> str:
    """A well-behaved client: one Idempotency-Key per request, retried on 5xx and on lost responses."""
    key = str(uuid.uuid4())
    execution_ids: set[str] = set()
    last: Any = None
    for attempt in range(attempts):
        try:
            if plan.roll(plan.before, "api:exception-before"):
                raise injected_timeout("the API call")
            status, body = invoke_api(request, key)
            if plan.roll(plan.after, "api:response-lost"):
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
) -> ChaosReport:
    """Run `requests` requests under the fault plan, `per_runtime` at a time in a fresh local runtime.

    The emulated table snapshots itself for every transaction (moto's rollback copy), so its cost grows
    with the table; a fresh runtime per group of requests keeps each request's cost flat. Within a
    group, all requests are in flight at once.
    """
    plan = plan or FaultPlan(seed=seed)
    report = ChaosReport(seed=seed)
    started = time.monotonic()
    remaining = requests
    while remaining > 0:
        group = min(per_runtime, remaining)
        _run_group(group, requests - remaining, seed, plan, report, timeout)
        remaining -= group
    report.injected = dict(sorted(plan.injected.items()))
    report.seconds = round(time.monotonic() - started, 1)
    return report


def _run_group(
    count: int, offset: int, seed: int, plan: FaultPlan, report: ChaosReport, timeout: float
) -> None:
    from tdev_cli.runtime import LocalRuntime

    with LocalRuntime() as runtime:
        injector = ChaosInjector(runtime, plan)

        def invoke_api(request: str, key: str) -> tuple[int, Any]:
            return runtime.api(
                "POST",
                "/v1/requests",
                {"request": request, "project_id": f"chaos-{seed}"},
                headers={"Idempotency-Key": key},
            )

        injector.install()
        try:
            accepted = [
                submit_with_retries(invoke_api, plan, REQUESTS[(offset + i) % len(REQUESTS)])
                for i in range(count)
            ]
            pending = list(accepted)
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                pending = _still_running(runtime, pending)
                time.sleep(0.1)
            runtime.drain_messaging()
        finally:
            injector.uninstall()
        runtime.drain_messaging()  # settle what the faults left in flight (nothing is re-sent)
        _measure(runtime, accepted, report)


def _still_running(runtime: Any, execution_ids: list[str]) -> list[str]:
    return [e for e in execution_ids if runtime.workflow_status(e) == "RUNNING"]


def _measure(runtime: Any, accepted: list[str], report: ChaosReport) -> None:
    import boto3
    from boto3.dynamodb.conditions import Key

    from tdev.data.executions import from_item

    table = boto3.resource("dynamodb", region_name="us-east-1").Table("tdev-local")
    report.requests += len(accepted)
    if len(set(accepted)) != len(accepted):
        report.duplicated_effects += len(accepted) - len(set(accepted))
        report.problems.append("two requests were given the same execution")
    dead = _dead_letter_bodies(runtime)
    report.dead_lettered += sum(len(v) for v in dead.values())
    statuses: Counter[str] = Counter()
    succeeded_results: Counter[str] = Counter()
    for execution_id in accepted:
        items = [from_item(i) for i in _query_all(table, Key("PK").eq(f"EXECUTION#{execution_id}"))]
        head = next((i for i in items if i["SK"] == "EXECUTION"), None)
        if head is None:
            report.lost += 1
            report.problems.append(f"{execution_id}: accepted but not stored")
            continue
        status = str(head["status"])
        statuses[status] += 1
        if status not in TERMINAL:
            report.lost += 1
            report.problems.append(f"{execution_id}: never terminal ({status})")
            continue
        report.terminal += 1
        results = [i for i in items if i["SK"].startswith("TASK#")]
        for item in results:
            if item["status"] == "SUCCEEDED":
                succeeded_results[item["result"]["agent"]] += 1
        notifications = int(head.get("notifications_sent", 0))
        announced = int(head.get("tasks_announced", 0))
        if notifications > 1:
            report.duplicated_effects += notifications - 1
            report.problems.append(f"{execution_id}: notified {notifications} times")
        if announced > len(results):
            report.duplicated_effects += announced - len(results)
            report.problems.append(f"{execution_id}: {announced} task activities for {len(results)} results")
        outcome_event_lost = notifications == 0 and not any(
            (m.get("executionId") == execution_id) for bodies in dead.values() for m in bodies
        )
        if outcome_event_lost:
            report.lost += 1
            report.problems.append(f"{execution_id}: outcome never notified nor dead-lettered")
        missing_activity = len(results) - announced
        if missing_activity > 0:
            dead_for_execution = sum(
                1 for bodies in dead.values() for m in bodies if m.get("executionId") == execution_id
            )
            if missing_activity > dead_for_execution:
                report.lost += missing_activity - dead_for_execution
                report.problems.append(f"{execution_id}: {missing_activity} task activities missing")
        if status == "FAILED":
            open_tasks = [
                t
                for t, s in head.get("tasks", {}).items()
                if s["status"] in {"SUCCEEDED", "RUNNING", "PENDING"}
            ]
            if open_tasks:
                report.half_done += 1
                report.lost += 1
                report.problems.append(f"{execution_id}: FAILED with uncompensated tasks {open_tasks}")
    for agent, count in succeeded_results.items():
        stats = table.get_item(Key={"PK": f"AGENT#{agent}", "SK": "STATS"}).get("Item") or {}
        runs = int(stats.get("successes", 0))
        if runs > count:
            report.duplicated_effects += runs - count
            report.problems.append(f"agent {agent}: {runs} successful runs counted for {count} results")
    for status, count in statuses.items():
        report.statuses[status] = report.statuses.get(status, 0) + count


def _query_all(table: Any, condition: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"KeyConditionExpression": condition, "ConsistentRead": True}
    while True:
        page = table.query(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _dead_letter_bodies(runtime: Any) -> dict[str, list[dict[str, Any]]]:
    """Every message in every DLQ (read without consuming: each is made visible again)."""
    import boto3

    from tdev.messaging import queues as q

    sqs = boto3.client("sqs", region_name="us-east-1")
    found: dict[str, list[dict[str, Any]]] = {}
    for name in [spec.dlq_name for spec in q.QUEUES] + [q.OUTBOX_FAILURES]:
        url = runtime.messaging.queue_urls[name]
        bodies: list[dict[str, Any]] = []
        handles: list[str] = []
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get(
                "Messages", []
            )
            if not messages:
                break
            for message in messages:
                handles.append(message["ReceiptHandle"])
                body = json.loads(message["Body"])
                if "dynamodb" in body:  # a stream record the publisher gave up on
                    image = body["dynamodb"].get("NewImage", {})
                    detail = json.loads(image.get("detail", {}).get("S", "{}"))
                    body = {
                        "eventId": detail.get("eventId"),
                        "executionId": detail.get("data", {}).get("executionId"),
                    }
                bodies.append(body)
        for handle in handles:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
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
    chaos.add_argument("--json", action="store_true", help="print the report as JSON before the summary")
    chaos.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    if args.faults < 1 or args.per_runtime < 1:
        print("tdev chaos: --faults and --per-runtime must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    from tdev_cli.main import _functions_output

    with _functions_output(".tdev/logs", "chaos"):
        report = run_chaos(args.faults, seed=args.seed, per_runtime=args.per_runtime)
    if args.json:
        data = asdict(report)
        print(json.dumps(data, indent=2))
    else:
        print(f"seed={report.seed} seconds={report.seconds} statuses={report.statuses}")
        print("injected: " + ", ".join(f"{k}={v}" for k, v in report.injected.items()))
        for problem in report.problems[:20]:
            print(f"problem: {problem}")
    print(report.summary())
    return EXIT_OK if report.holds else EXIT_FAILED
