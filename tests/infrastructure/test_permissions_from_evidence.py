"""Permissions and metrics from evidence: what each function calls and emits, locally, against the role
and the dashboard and alarms its stacks synthesize.

One local runtime drives the product paths (a whole request, a failed one with its saga, sessions with
chat on the Bedrock model path and Titan embeddings, every API route, the authorizer with tokens and API
keys, the messaging drain, the session sweeper) while every AWS call each function makes is recorded
(`tdev_cli.aws_calls`). Then, per function, against its role in the dev templates:
- every call is allowed (action, resource, conditions), and
- every granted action is used by a recorded call or listed in `stacks.permissions.NOT_CALLED_BY_CODE`
  with its reason.
Bedrock answers through a fake on the clients' `before-send` hook (no network, no credentials).

Metrics: every EMF record the functions print while the paths run is kept with the function that printed
it. Every metric of our namespace that the operations dashboard names or an alarm watches must be one of
them, with the same dimension names (and, for an alarm, the same dimension values as deployed: the
`service` of a function's metrics is its POWERTOOLS_SERVICE_NAME).
"""

from __future__ import annotations

import io
import json
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from unittest import mock

import pytest

from stacks.constructs.deployment import LIVE_ALIAS
from stacks.dashboards import NAMESPACE
from stacks.permissions import NOT_CALLED_BY_CODE
from tdev.errors import TransientError
from tdev.llm.offline import read_brief
from tdev.llm.offline_tools import read_turn
from tdev_cli.aws_calls import AwsCall, current_function
from tdev_cli.permissions import Need, Policy, RoleIndex, action_matches, needs
from tests.statemachines.test_verify_loop import CSV_REQUEST, ScriptedCoder, scripted

pytestmark = pytest.mark.slow

BEDROCK_MODEL = "bedrock:amazon.nova-lite-v1:0"
# Environment variables through which the stacks and the local runtime give the code the same resource:
# the deployed name (resolved from the template) and the local one are the same resource.
BOUND_BY_ENVIRONMENT = (
    "TABLE_NAME",
    "IDEMPOTENCY_TABLE_NAME",
    "EVENT_BUS_NAME",
    "STATE_MACHINE_ARN",
    "KMS_KEY_ID",
    "CHECKPOINT_BUCKET",
    "TDEV_INTERACTIVE_API_KEY_ID",
    "TDEV_ENV",
    "WORKSPACE_BUCKET",
    "SANDBOX_FUNCTION_NAME",
    "TDEV_ALERT_ESCALATION_ARN",
    "TDEV_ALERT_SECRET_NAME",
    "TDEV_ALERT_EMAIL_TOPIC_ARN",
    "TDEV_ALERT_SMS_TOPIC_ARN",
    "TDEV_FLAGS_APPLICATION_ID",
    "TDEV_FLAGS_ENVIRONMENT_ID",
    "TDEV_FLAGS_PROFILE_ID",
    "TDEV_FLAGS_DEPLOYMENT_STRATEGY_ID",
)
# URLs whose host names the resource: the deployed and the local one are bound by that name (_renames).
BOUND_BY_URL_HOST = ("TDEV_WEBSOCKET_ENDPOINT",)
# The local WebSocket API (moto's management API): its id stands for the deployed API's, its stage is the
# local environment's name as the deployed stage is the environment's.
WEBSOCKET_ENDPOINT = "https://abcdef1234.execute-api.us-east-1.amazonaws.com/local"


@dataclass(frozen=True)
class Emitted:
    """One metric of one EMF record: who printed it, and what CloudWatch would store."""

    function: str | None
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]

    @property
    def dimension_names(self) -> frozenset[str]:
        return frozenset(key for key, _ in self.dimensions)


class EmfRecorder(io.TextIOBase):
    """Stands in for sys.stdout while the paths run: passes everything through, keeps the EMF records."""

    def __init__(self, through: Any) -> None:
        self.through = through
        self.emitted: list[Emitted] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if '"_aws"' in line:
                self._record(line)
        return int(self.through.write(text))

    def flush(self) -> None:
        self.through.flush()

    def _record(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        function = current_function()
        with self._lock:
            for directive in record["_aws"]["CloudWatchMetrics"]:
                for names in directive["Dimensions"]:
                    dimensions = tuple(sorted((key, str(record[key])) for key in names))
                    for metric in directive["Metrics"]:
                        self.emitted.append(
                            Emitted(function, directive["Namespace"], metric["Name"], dimensions)
                        )


class FakeBedrock:
    """Answers bedrock-runtime's Converse (a short assistant text) and InvokeModel (a Titan embedding)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse
        from moto.core.botocore_stubber import MockRawResponse

        path = request.url.split("amazonaws.com", 1)[-1]
        self.calls.append(path)
        sent = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
        if path.endswith("/converse") and _asks_to_fix(sent) and "toolResult" not in sent:
            # A fix brief: first run the project's tests with the code agent's run_tests tool.
            body: dict[str, Any] = {
                "output": {
                    "message": {
                        "role": "assistant",
                        "content": [{"toolUse": {"toolUseId": "fix-1", "name": "run_tests", "input": {}}}],
                    }
                },
                "stopReason": "tool_use",
                "usage": {"inputTokens": 60, "outputTokens": 6, "totalTokens": 66},
                "metrics": {"latencyMs": 5},
            }
        elif path.endswith("/converse"):
            body = {
                "output": {
                    "message": {"role": "assistant", "content": [{"text": "## Result\nDone (fake)."}]}
                },
                "stopReason": "end_turn",
                "usage": {"inputTokens": 40, "outputTokens": 8, "totalTokens": 48},
                "metrics": {"latencyMs": 5},
            }
        elif path.endswith("/invoke"):
            dimensions = json.loads(request.body or b"{}").get("dimensions", 512)
            body = {"embedding": [1.0 / (i + 1) for i in range(dimensions)], "inputTextTokenCount": 4}
        else:
            return AWSResponse(request.url, 400, {}, MockRawResponse(b'{"message":"not faked"}'))
        return AWSResponse(
            request.url, 200, {"Content-Type": "application/json"}, MockRawResponse(json.dumps(body).encode())
        )


def _asks_to_fix(sent: str) -> bool:
    return "test-failures" in sent and '"run_tests"' in sent


class FlakyFixer(ScriptedCoder):
    """The scripted coder (first code has a bug), whose first fix meets a transient failure: the fix falls
    back to the request's Bedrock model (which runs the tests and changes nothing), the next fix works."""

    failed_fixes: ClassVar[int] = 0

    def complete(self, messages: Sequence[Any], tools: Sequence[str] = ()) -> dict[str, Any]:
        fixing = read_brief(messages).role == "CodeAgent" and tools and ScriptedCoder.code_runs
        if fixing and read_turn(messages).round == 0 and FlakyFixer.failed_fixes == 0:
            FlakyFixer.failed_fixes += 1
            raise TransientError("the offline model is throttled (scripted)")
        return super().complete(messages, tools)


_EMITTED: list[Emitted] = []  # what the `evidence` fixture's drive printed (the metric tests read it)


@pytest.fixture(scope="module")
def evidence(
    redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[AwsCall], dict[str, dict[str, str]]]]:
    """Drive every product path once; yield the recorded calls and each function's local bindings."""
    import botocore.session

    from tdev_cli.runtime import LocalRuntime

    patch = pytest.MonkeyPatch()
    try:
        for key, value in {
            # what the Bedrock path's session is made from (answered by the fake)
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "TDEV_EMBEDDINGS": "bedrock",  # as the stacks set it for the functions that run sessions
            # The WebSocket API's management endpoint, as the realtime stack gives it to the pusher.
            "TDEV_WEBSOCKET_ENDPOINT": WEBSOCKET_ENDPOINT,
        }.items():
            patch.setenv(key, value)
        bedrock = FakeBedrock()
        original = botocore.session.Session.create_client

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            if client.meta.service_model.service_name == "bedrock-runtime":
                client.meta.events.register_first("before-send.bedrock-runtime", bedrock)
            return client

        from moto.core.botocore_stubber import BotocoreStubber

        moto_answers = BotocoreStubber.__call__

        def fake_before_moto(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            # A bedrock-runtime client made before this fixture (a cached one, or one whose session an
            # earlier local runtime set up) lacks the handler above: moto would answer "not implemented".
            if "bedrock-runtime" in str(request.url):
                return bedrock(request)
            return moto_answers(stubber, event_name, request, **kwargs)

        with (
            mock.patch.object(botocore.session.Session, "create_client", create_client),
            mock.patch.object(BotocoreStubber, "__call__", fake_before_moto),
            LocalRuntime(
                redis_url=redis_server,
                keys_dir=tmp_path_factory.mktemp("keys"),
                default_model=BEDROCK_MODEL,
                retry_interval_seconds=1,
                max_transient_retries=1,
                # Every function reads Parameter Store and AppConfig itself, as each does in its own
                # container deployed (here they share one process, and one cached read would hide the
                # others' calls).
                config_poll_seconds=0,
                alert_wait_seconds=1,  # the alert escalation's wait between levels
            ) as rt,
        ):
            _emulate_the_gateways_usage_plans(patch)
            emf = EmfRecorder(sys.stdout)
            patch.setattr(sys, "stdout", emf)
            _drive_every_path(rt)
            patch.setattr(sys, "stdout", emf.through)
            converse = [p for p in bedrock.calls if p.endswith("/converse")]
            assert converse, "the Bedrock model path was not driven"
            assert any(p.endswith("/invoke") for p in bedrock.calls), "Titan embeddings were not driven"
            import os

            bound = (*BOUND_BY_ENVIRONMENT, *BOUND_BY_URL_HOST)
            bindings = {name: os.environ.get(name, "") for name in bound}
            invoked = {name for name, outcome in rt.invocations if outcome == "ok"}
            _EMITTED[:] = emf.emitted
            yield list(rt.aws_calls.calls), {"*": bindings, "invoked": dict.fromkeys(sorted(invoked), "ok")}
    finally:
        # Also when driving the paths failed: the gateway's key id and plan name must not stay in the
        # environment (and the services cached from them), or every later test's authorizer asks a fresh
        # moto for that key.
        patch.undo()
        from tdev import container

        container.reset()


def _emulate_the_gateways_usage_plans(patch: pytest.MonkeyPatch) -> None:
    """What the API stack creates: the machine clients' usage plan and the interactive key."""
    import boto3

    from tdev import container

    apigw = boto3.client("apigateway", region_name="us-east-1")
    apigw.create_usage_plan(name="t-developer-local-machine-clients")
    interactive = apigw.create_api_key(name="t-developer-local-interactive", enabled=True)
    patch.setenv("TDEV_USAGE_PLAN_NAME", "t-developer-local-machine-clients")
    patch.setenv("TDEV_INTERACTIVE_API_KEY_ID", interactive["id"])
    container.reset()


def _drive_every_path(rt: Any) -> None:
    admin = {"Authorization": f"Bearer {rt.token('evidence-admin', ('admin',))}"}
    # 1. A whole request, then one whose last level fails for good: compensation (saga).
    first = rt.run("Design and implement a REST API for todo items, with unit tests")
    assert first["status"] == "SUCCEEDED"

    def fail_review(name: str, event: dict[str, Any]) -> None:
        if name == "run_agent" and event["task"]["agent"] == "ReviewAgent":
            raise RuntimeError("the agent cannot do this")

    rt.fault_hook = fail_review
    failed = rt.run("Design and implement a REST API for notes, with unit tests and a code review")
    rt.fault_hook = None
    assert failed["status"] == "FAILED", failed["status"]
    # The verify loop's fix: the code agent's first code (offline model, a bug injected) fails its test
    # run, fix_failing_tests has the code agent fix it in the workspace, the second run passes.
    # The first fix falls back to the Bedrock model (transient failure), which runs the tests and
    # changes nothing; the second fix repairs the code.
    scripted(broken_runs=1)
    FlakyFixer.failed_fixes = 0
    with mock.patch("tdev.llm.catalog.OfflineModel", FlakyFixer):
        fixed = rt.run(CSV_REQUEST, model="offline:tdev-offline-1", fallback_models=[BEDROCK_MODEL])
    outcomes = [i["outcome"] for i in fixed["verify"]]
    assert outcomes == ["failed", "failed", "passed"], fixed["verify"]
    assert [i["fixed_by"] for i in fixed["verify"]] == [None, BEDROCK_MODEL, "offline:tdev-offline-1"]
    assert fixed["status"] == "SUCCEEDED", fixed["status"]
    # A failure whose compensation fails for good: record_compensation_failure records FAILED visibly.
    from tdev.errors import AgentError

    def broken_saga(name: str, event: dict[str, Any]) -> None:
        if name == "aggregate_results":
            raise RuntimeError("the aggregation is broken")
        if name == "compensate":
            raise AgentError("the artifact store refuses every withdrawal")

    rt.fault_hook = broken_saga
    unrecovered = rt.run("Design and implement a REST API for todo items")
    rt.fault_hook = None
    assert unrecovered["status"] == "FAILED" and unrecovered["compensation_error"], unrecovered
    assert ("record_compensation_failure", "ok") in rt.invocations
    # The reconciler starts a request whose StartExecution was lost (left PENDING, no workflow).
    from datetime import timedelta

    from tests.statemachines.test_reconciler import backdate, orphan, start_execution_fails

    lost = orphan(rt)
    backdate(lost, timedelta(minutes=2))
    assert rt.reconcile()["outcomes"] == {lost: "started"}
    assert rt.wait(lost)["status"] == "SUCCEEDED"
    # ... and fails one whose start is refused for good, recording FAILED with its outbox event.
    refused = orphan(rt)
    backdate(refused, timedelta(minutes=2))
    with start_execution_fails("AccessDeniedException"):
        assert rt.reconcile()["failed"] == 1
    assert rt.api("GET", f"/v1/executions/{refused}")[1]["status"] == "FAILED"
    # A request that starts from that project: the API copies its workspace (CopyObject) before starting.
    status, follow_up = rt.api(
        "POST",
        "/v1/requests",
        {"request": "Add a CLI that counts the words in a file", "base_execution_id": fixed["execution_id"]},
    )
    assert status == 202, follow_up
    assert rt.wait(follow_up["execution_id"])["base"]["execution_id"] == fixed["execution_id"]
    # The kill switch: a request cancelled as soon as it is accepted (StopExecution on its workflow).
    accepted = rt.submit("Design and implement a REST API for bookmarks")
    status, cancelled = rt.api("POST", f"/v1/executions/{accepted}/cancel")
    assert (status, cancelled["status"]) == (200, "CANCELLED"), cancelled
    # 2. The read routes.
    artifacts = f"/v1/executions/{fixed['execution_id']}/artifacts"
    for path in (
        "/health",
        "/openapi.json",
        f"/v1/executions/{failed['execution_id']}",
        "/v1/agents",
        "/v1/models",
        artifacts,
        f"{artifacts}/csv_to_json/__init__.py",
    ):
        assert rt.api("GET", path)[0] == 200, path
    assert rt.http("GET", "/docs", {}, None)["statusCode"] == 200  # HTML, not JSON
    assert rt.api("POST", "/v1/models/route", {"task_type": "code"})[0] == 200
    # 3. Sessions: lifecycle, chat on the Bedrock model, memory (Titan embeddings), checkpoints.
    status, session = rt.api("POST", "/v1/sessions", {"agents": ["CodeAgent"]})
    assert status == 201, session
    sid = session["session_id"]
    for verb, body in (
        ("heartbeat", None),
        ("messages", {"text": "Write a function that adds two numbers"}),
        ("memory", {"content": "the service listens on port 8080", "importance": 0.9}),
        ("checkpoints", {"kind": "manual"}),
        ("pause", None),
        ("resume", None),
    ):
        status, answer = rt.api("POST", f"/v1/sessions/{sid}/{verb}", body)
        assert status in (200, 201), (verb, answer)
    assert rt.api("GET", f"/v1/sessions/{sid}")[0] == 200
    # The session sweeper recovers a session whose worker died (checkpoint read back from S3).
    from tdev.sessions.service import service

    crashed = rt.api("POST", "/v1/sessions", {"agents": ["CodeAgent"]})[1]["session_id"]
    rt.api("POST", f"/v1/sessions/{crashed}/checkpoints", {"kind": "manual"})
    service().heartbeats.stop(crashed)
    service().forget_workspace(crashed)
    assert rt.invoke("session_sweeper", {"time": "2026-11-29T03:00:00Z"})["recovered"] == [crashed]
    # The failure paths the session alarms watch: a turn whose model call fails (SessionErrors), and a
    # crashed session that cannot be brought back (SessionRecoveryFailures).
    with mock.patch("tdev.chat.turns.chat_turn", side_effect=RuntimeError("the model is down")):
        status, answer = rt.api("POST", f"/v1/sessions/{sid}/messages", {"text": "are you there?"})
    assert status == 500, answer
    lost = rt.api("POST", "/v1/sessions", {"agents": ["CodeAgent"]})[1]["session_id"]
    rt.api("POST", f"/v1/sessions/{lost}/checkpoints", {"kind": "manual"})
    service().heartbeats.stop(lost)
    service().forget_workspace(lost)
    with (
        mock.patch("tdev.sessions.service.MAX_RECOVERY_ATTEMPTS", 1),
        mock.patch("tdev.agents.runtime.build_agent", side_effect=RuntimeError("no model answers")),
    ):
        assert lost in rt.invoke("session_sweeper", {"time": "2026-11-29T03:05:00Z"})["failed"]
    assert rt.api("POST", f"/v1/sessions/{sid}/terminate")[0] == 200
    # 4. Security routes: API keys (with their usage-plan twins), the authorizer on a key, revocations.
    status, created = rt.api(
        "POST", "/v1/api-keys", {"name": "evidence-bot", "roles": ["viewer"]}, headers=admin
    )
    assert status == 201, created
    assert rt.api("GET", "/v1/agents", headers={"X-Api-Key": created["api_key"]})[0] == 200
    assert rt.api("GET", "/v1/api-keys", headers=admin)[0] == 200
    assert rt.api("DELETE", f"/v1/api-keys/{created['key_id']}", headers=admin)[0] == 200
    revoke = {"jti": "evidence-jti", "expires_at": int(time.time()) + 600}
    assert rt.api("POST", "/v1/tokens/revoke", revoke, headers=admin)[0] == 200
    assert rt.api("POST", "/v1/principals/evidence-gone/disable", headers=admin)[0] == 200
    role = {"inherits": ["viewer"], "permissions": [{"id": "p1", "resource": "agent/*", "action": "list"}]}
    assert rt.api("PUT", "/v1/roles/evidence-role", role, headers=admin)[0] == 200
    assert rt.api("GET", "/v1/audit/evidence-admin", headers=admin)[0] == 200
    # Configuration and flags (tdev.config): a change, a protected change approved by a second admin, a
    # rollback that deletes a parameter, a flag.
    change = {"value": "bedrock:amazon.nova-lite-v1:0", "reason": "evidence"}
    assert rt.api("PUT", "/v1/config/default_model", change, headers=admin)[0] == 200
    status, pending = rt.api(
        "PUT", "/v1/config/max_sessions_global", {"value": 99, "reason": "evidence"}, headers=admin
    )
    assert status == 202
    second = {"Authorization": f"Bearer {rt.token('evidence-admin-2', ('admin',))}"}
    assert rt.api("POST", f"/v1/config/changes/{pending['change_id']}/approve", headers=second)[0] == 200
    assert (
        rt.api("POST", "/v1/config/rollback", {"version": 1, "reason": "evidence"}, headers=admin)[0] == 200
    )
    flag = {"spec": {"enabled": True, "rollout_percent": 100}, "reason": "evidence"}
    assert rt.api("PUT", "/v1/flags/verify_loop", flag, headers=admin)[0] == 200
    assert rt.api("GET", "/v1/config/history", headers=admin)[0] == 200
    # The platform's secrets: the compliance report (their rotation dates), the audit trail's signed cursor
    # (the API signing secret), and a rotation of that secret (Secrets Manager invokes rotate_secret four
    # times, one per step).
    assert rt.api("GET", "/v1/config/compliance", headers=admin)[0] == 200
    status, page = rt.api("GET", "/v1/audit/evidence-admin?limit=1", headers=admin)
    assert status == 200 and page["next"]
    before = urllib.parse.quote(page["next"], safe="")
    assert rt.api("GET", f"/v1/audit/evidence-admin?limit=1&before={before}", headers=admin)[0] == 200
    import boto3

    from tdev_cli.runtime import API_SIGNING_SECRET

    rotator = boto3.client("lambda", region_name="us-east-1").get_function(FunctionName="rotate_secret")
    boto3.client("secretsmanager", region_name="us-east-1").rotate_secret(
        SecretId=API_SIGNING_SECRET,
        RotationLambdaARN=rotator["Configuration"]["FunctionArn"],
        RotationRules={"AutomaticallyAfterDays": 30},
    )
    # 5. Messaging: outbox -> bus -> queues -> consumers.
    assert rt.drain_messaging() > 0
    _wait_for_workflows(rt)
    # 6. Alerting: error analytics' events through the intake (a medium one notified at once, email by SNS;
    # a high one grouped and escalated), then acknowledged, which ends its escalation.
    error = {"signature": "evidence", "type": "KeyError", "message": "x", "count": 3, "severity": "medium"}
    rt.publish("t-developer.errors", "ErrorSignatureNew", error)
    for _ in range(2):
        rt.publish(
            "t-developer.errors",
            "ErrorSpikeDetected",
            {**error, "signature": "evidence-spike", "severity": "high"},
        )
    delivered = rt.deliver_alerts()
    # The drive's own failures above were recorded by error analytics, whose events reach the intake too.
    assert any(o.get("key") not in ("error:evidence", "error:evidence-spike") for o in delivered), delivered
    outcomes = [o for o in delivered if o.get("key") in ("error:evidence", "error:evidence-spike")]
    assert [o["outcome"] for o in outcomes] == ["notified", "escalating", "grouped"], outcomes
    assert rt.api("GET", "/v1/alerts", headers=admin)[0] == 200
    for alert in {o["alert_id"] for o in delivered if o["outcome"] == "escalating"}:
        assert rt.api("POST", f"/v1/alerts/{alert}/ack", headers=admin)[0] == 200
    _wait_for_escalations(rt)
    # 7. Live progress over the WebSocket API (its progress log filled by the drain above).
    _drive_live_progress(rt, first["execution_id"])


def _drive_live_progress(rt: Any, execution_id: str) -> None:
    """Connect and subscribe (websocket), the pusher on a new subscription and a new progress event, a
    connection API Gateway reports gone (410: a botocore Stubber, moto never answers it), a disconnect."""
    from botocore.stub import Stubber

    from tdev import aws
    from tdev_cli.runtime import LOCAL_USER
    from tests.functions.test_websocket_handlers import load_event

    def stream_record(name: str, connection_id: str) -> dict[str, Any]:
        text = json.dumps(load_event(name))
        text = text.replace("0b9e4c1e-5f7a-4d43-9a55-3f1d8c2a7e10", execution_id)
        return dict(json.loads(text.replace("Qv3x1cGLIAMCJGw=", connection_id)))

    token = rt.token(LOCAL_USER, ("developer",))
    for connection_id in ("evidence-ws-1", "evidence-ws-2"):
        connect = load_event("websocket_connect")
        connect["queryStringParameters"] = {"token": token}
        connect["requestContext"]["connectionId"] = connection_id
        assert rt.invoke("websocket", connect)["statusCode"] == 200
        subscribe = load_event("websocket_subscribe")
        subscribe["requestContext"]["connectionId"] = connection_id
        subscribe["body"] = json.dumps({"action": "subscribe", "execution_id": execution_id})
        assert rt.invoke("websocket", subscribe)["statusCode"] == 200
    pushed = rt.invoke("push_progress", stream_record("push_progress_subscription", "evidence-ws-1"))
    assert pushed == {"batchItemFailures": []}
    with Stubber(aws.endpoint_client("apigatewaymanagementapi", WEBSOCKET_ENDPOINT)) as gone:
        gone.add_client_error("post_to_connection", service_error_code="GoneException", http_status_code=410)
        pushed = rt.invoke("push_progress", stream_record("push_progress", "evidence-ws-2"))
    assert pushed == {"batchItemFailures": []}
    disconnect = load_event("websocket_disconnect")
    disconnect["requestContext"]["connectionId"] = "evidence-ws-1"
    assert rt.invoke("websocket", disconnect)["statusCode"] == 200


def _wait_for_escalations(rt: Any) -> None:
    import boto3

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    deadline = time.monotonic() + 60
    while sfn.list_executions(stateMachineArn=rt.escalation_arn, statusFilter="RUNNING")["executions"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def _wait_for_workflows(rt: Any) -> None:
    import boto3

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    deadline = time.monotonic() + 120
    while sfn.list_executions(stateMachineArn=rt.state_machine_arn, statusFilter="RUNNING")["executions"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------ checks
def _last_segment(value: str) -> str:
    # A function's `live` alias (deployed ARN or local qualified name) binds by the function's name.
    return re.split(r"[:/]", value.rstrip("/").removesuffix(f":{LIVE_ALIAS}"))[-1]


def _renames(index: RoleIndex, local: dict[str, str], prefix: str) -> dict[str, str]:
    """Deployed names -> local names, bound by the environment variables both give the code, and the
    queues (named `<prefix>-<name>` deployed, `<name>` locally: tdev.messaging.queues)."""
    from tdev.messaging import queues as q

    renames: dict[str, str] = {}
    for _, _, environment in index.functions().values():
        for name in BOUND_BY_ENVIRONMENT:
            deployed = environment.get(name)
            if isinstance(deployed, str) and local.get(name):
                renames[_last_segment(deployed)] = _last_segment(local[name])
    for spec in q.QUEUES:
        renames[f"{prefix}-{spec.name}"] = spec.name
        renames[f"{prefix}-{spec.dlq_name}"] = spec.dlq_name
    renames[f"{prefix}-{q.OUTBOX_FAILURES}"] = q.OUTBOX_FAILURES
    # A URL's host names the resource (the WebSocket API's management endpoint: <api id>.execute-api...).
    for _, _, environment in index.functions().values():
        for name in BOUND_BY_URL_HOST:
            deployed = environment.get(name)
            if isinstance(deployed, str) and local.get(name):
                host = urllib.parse.urlsplit(deployed).hostname or ""
                renames[host.split(".")[0]] = str(urllib.parse.urlsplit(local[name]).hostname).split(".")[0]
    renames[prefix] = f"tdev-{local['TDEV_ENV']}"  # secret names: tdev-dev/platform/... -> tdev-local/...
    return renames


@pytest.fixture(scope="module")
def checked(
    dev: Any, evidence: tuple[list[AwsCall], dict[str, dict[str, str]]]
) -> tuple[dict[str, Policy], dict[str, list[Need]]]:
    calls, bindings = evidence
    index = RoleIndex({s.stack_name: dev.template_json(s) for s in dev.stacks.all})
    renames = _renames(index, bindings["*"], dev.stacks.orchestration.settings.prefix)
    policies = {name: index.policy(name, renames) for name in index.functions()}
    recorded: dict[str, list[Need]] = {}
    for call in calls:
        if call.function is not None:
            recorded.setdefault(call.function, []).extend(needs(call))
    return policies, recorded


def test_every_function_was_driven(
    checked: tuple[dict[str, Policy], dict[str, list[Need]]],
    evidence: tuple[list[AwsCall], dict[str, dict[str, str]]],
) -> None:
    policies, recorded = checked
    # A function whose code calls no AWS API (the test sandbox: files in, report out) counts as driven
    # only when a product path invoked it and it completed; its role is then checked like any other.
    invoked = set(evidence[1]["invoked"])
    silent = sorted(set(policies) - set(recorded) - invoked)
    assert not silent, (
        f"functions neither invoked nor making an AWS call while every product path ran: {silent}"
    )
    assert "sandbox" in invoked, "the verify loop never ran the test sandbox"


def test_every_recorded_call_is_allowed_by_the_functions_role(
    checked: tuple[dict[str, Policy], dict[str, list[Need]]],
) -> None:
    policies, recorded = checked
    denied = sorted(
        {
            f"{function}: {need.call} needs {need.action} on {need.resource} {need.keys or ''}".rstrip()
            for function, found in recorded.items()
            for need in found
            if not policies[function].allows(need)
        }
    )
    assert not denied, "calls the deployed role would deny:\n" + "\n".join(denied)


def test_every_granted_action_is_used_or_has_a_reason(
    checked: tuple[dict[str, Policy], dict[str, list[Need]]],
) -> None:
    policies, recorded = checked
    unused = []
    for function, policy in policies.items():
        for statement, action in policy.grants():
            used = any(
                action_matches(action, n.action) and statement.covers(n) for n in recorded.get(function, [])
            )
            if not used and not _justified(function, action):
                unused.append(f"{function}: {action} on {', '.join(statement.resources)}")
    assert not unused, (
        "granted but never called, and not in stacks.permissions.NOT_CALLED_BY_CODE:\n"
        + "\n".join(sorted(set(unused)))
    )


def _justified(function: str, action: str) -> bool:
    return any(
        action_matches(pattern, action) or pattern == action
        for (who, pattern) in NOT_CALLED_BY_CODE
        if who in ("*", function)
    )


# ------------------------------------------------------------------------------------------------ metrics
@pytest.fixture(scope="module")
def emitted(evidence: Any, dev: Any) -> list[Emitted]:
    """The drive's metrics, each with the dimension values it would have deployed: a function's own
    `service` is its POWERTOOLS_SERVICE_NAME (all functions share one process, and one name, here)."""
    from tdev.observability import SERVICE

    services = _service_names(dev)
    deployed = []
    for metric in _EMITTED:
        dims = dict(metric.dimensions)
        if dims.get("service") == SERVICE and metric.function is not None:
            assert metric.function in services, f"{metric.function} has no POWERTOOLS_SERVICE_NAME deployed"
            dims["service"] = metric.function
        deployed.append(Emitted(metric.function, metric.namespace, metric.name, tuple(sorted(dims.items()))))
    assert deployed, "no EMF record was printed while every path ran"
    return deployed


def _service_names(dev: Any) -> set[str]:
    """The POWERTOOLS_SERVICE_NAME of every deployed function (each function's registry name)."""
    names = set()
    for stack in dev.stacks.all:
        for resource in dev.template_json(stack)["Resources"].values():
            if resource["Type"] == "AWS::Lambda::Function":
                env = resource["Properties"].get("Environment", {}).get("Variables", {})
                if "POWERTOOLS_SERVICE_NAME" in env:
                    names.add(env["POWERTOOLS_SERVICE_NAME"])
    return names


def test_every_metric_the_dashboard_names_is_emitted(emitted: list[Emitted], dev: Any) -> None:
    seen = {(m.namespace, m.name, m.dimension_names) for m in emitted}
    named = dev.stacks.operations.dashboard.custom_metrics
    assert named, "the dashboard names none of our metrics"
    missing = sorted(
        f"{m.name} {sorted(m.dimensions)}"
        for m in named
        if (NAMESPACE, m.name, frozenset(m.dimensions)) not in seen
    )
    assert not missing, "the dashboard shows metrics no product path emits:\n" + "\n".join(missing)
    body = json.dumps(dev.template_json(dev.stacks.operations))
    assert all(m.name in body for m in named), "a declared metric is missing from the dashboard's body"


def test_every_alarm_on_our_metrics_watches_an_emitted_metric(emitted: list[Emitted], dev: Any) -> None:
    seen = {(m.namespace, m.name, m.dimensions) for m in emitted}
    watched = []
    for stack in dev.stacks.all:
        for logical_id, resource in dev.template_json(stack)["Resources"].items():
            if resource["Type"] != "AWS::CloudWatch::Alarm":
                continue
            props = resource["Properties"]
            metrics = (
                [props]
                if "MetricName" in props
                else [q["MetricStat"]["Metric"] for q in props.get("Metrics", []) if "MetricStat" in q]
            )
            for metric in metrics:
                if metric.get("Namespace") == NAMESPACE:
                    dims = tuple(sorted((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])))
                    watched.append((f"{stack.stack_name}/{logical_id}", metric["MetricName"], dims))
    assert watched, "no alarm watches our namespace"
    missing = sorted(
        f"{where}: {name} {list(dims)}"
        for where, name, dims in watched
        if (NAMESPACE, name, dims) not in seen
    )
    assert not missing, "alarms on metrics no product path emits (as deployed):\n" + "\n".join(missing)
