"""The embedded local runtime: the deployed architecture, emulated in this process.

moto provides DynamoDB, Step Functions (executing the real ASL file with its interpreter), Lambda,
EventBridge and SQS. Lambda invocations are dispatched to our real handlers in process, so a request
goes through exactly the code that runs in AWS. Resources are created from the same definitions the
CDK stacks use (table schema, ASL file and its substitutions), so local and deployed cannot drift.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from tdev_cli.aws_calls import CallRecorder, running

REPO_ROOT = Path(__file__).resolve().parents[2]
# The handlers (functions/) and the state machine definitions (statemachines/) live beside the CLI.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
from functions.registry import functions_triggered_by  # noqa: E402

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's fixed emulated account, not a real one
TABLE_NAME = "tdev-local"
EVENT_BUS = "t-developer"
STATE_MACHINE = "tdev-request-workflow"
# Alerting (tdev.alerts): the escalation state machine, the channels' secret, the intake's queue.
ESCALATION_STATE_MACHINE = "tdev-alert-escalation"
ALERT_SECRET = "tdev-local/alerts"
ALERT_INTAKE_QUEUE = "tdev-local-alert-intake"
ALERT_ALARM_PREFIX = "tdev-local"
# The functions dispatched on invocation (API, workflow, schedule) and those behind event source mappings
# (stream, queues: driven by LocalRuntime.drain_messaging()), from the one registry the stacks read too.
FUNCTIONS = functions_triggered_by("api", "workflow", "invoke", "schedule", "event", "escalation")
API_SIGNING_SECRET = "tdev-local/platform/api-signing"
MESSAGING_FUNCTIONS = functions_triggered_by("stream", "queue")
# The deployed WebSocket API's functions (tdev.realtime): invoked with their events (tests, the sample
# events); locally, live progress is `tdev serve`'s server-sent events, so nothing drives them here.
REALTIME_FUNCTIONS = functions_triggered_by("websocket", "progress-stream")
CHECKPOINT_BUCKET = "tdev-local-checkpoints"
WORKSPACE_BUCKET = "tdev-local-workspaces"
WRITE_BEHIND_DLQ = "tdev-local-write-behind-dlq"
SANDBOX_FUNCTION = "sandbox"
# Callers invoke a function's `live` alias (stacks/constructs/deployment.py); locally it is the function.
LIVE_ALIAS = "live"

LOCAL_USER = "local-developer"
# The local runtime follows executions by polling (5 requests a second); `tdev serve` applies the spec's
# limits (100 per 15 minutes per principal) instead of this one.
LOCAL_RATE_LIMIT = "100000/900"

# A hook called before each dispatched invocation: (function name, event) -> None, may raise.
FaultHook = Callable[[str, dict[str, Any]], None]

# AWS's limits, enforced here so nothing passes locally that fails deployed. moto itself enforces
# DynamoDB's 400 KB item (ValidationException) and Step Functions' 256 KB state payload
# (States.DataLimitExceeded); tests/unit/test_aws_limits.py proves each.
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024  # synchronous invocation: request and response, 6 MB each
API_GATEWAY_PAYLOAD_BYTES = 10 * 1024 * 1024  # REST API request payload
API_GATEWAY_TIMEOUT_SECONDS = 29.0  # REST API integration timeout


class RequestEntityTooLargeException(Exception):
    """What Lambda's Invoke answers (HTTP 413) when a synchronous request payload is over 6 MB."""


class ResponseSizeTooLarge(Exception):
    """A function whose response is over 6 MB: Lambda reports it as a function error of this type."""

    error_type = "Function.ResponseSizeTooLarge"


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that Powertools reads."""

    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def local_substitutions(
    retry_interval_seconds: int = 1,
    max_transient_retries: int = 3,
    max_concurrent_tasks: int = 50,
    max_verify_iterations: int = 3,
    capacity_retry_interval_seconds: int = 1,
    max_capacity_retries: int = 60,
) -> dict[str, str]:
    """The ASL placeholders filled through the stack's own function, with local ARNs and tuning."""
    from statemachines.request_workflow import workflow_substitutions

    return workflow_substitutions(
        function_arns={name: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}" for name in FUNCTIONS},
        tuning={
            "MaxConcurrentTasks": str(max_concurrent_tasks),
            "RetryIntervalSeconds": str(retry_interval_seconds),
            "MaxTransientRetries": str(max_transient_retries),
            "MaxVerifyIterations": str(max_verify_iterations),
            "CapacityRetryIntervalSeconds": str(capacity_retry_interval_seconds),
            "MaxCapacityRetries": str(max_capacity_retries),
        },
    )


class LocalRuntime:
    """Start with `with LocalRuntime() as rt:`; everything stops (and the environment is restored) on exit."""

    def __init__(
        self,
        *,
        default_model: str = "offline:tdev-offline-1",
        retry_interval_seconds: int = 1,
        max_transient_retries: int = 3,
        fault_hook: FaultHook | None = None,
        redis_url: str | None = None,
        keys_dir: Path | str | None = None,
        rate_limit_default: str | None = LOCAL_RATE_LIMIT,
        fallback_models: tuple[str, ...] = (),
        api_timeout_seconds: float = API_GATEWAY_TIMEOUT_SECONDS,
        max_verify_iterations: int = 3,
        config_poll_seconds: int | None = None,
        alert_wait_seconds: int = 300,
        alert_retry_interval_seconds: int = 1,
        alert_max_notify_retries: int = 3,
    ) -> None:
        # The alert escalation's wait between levels and its retries of a level no channel took.
        self.alert_wait_seconds = alert_wait_seconds
        self.alert_tuning = {
            "RetryIntervalSeconds": str(alert_retry_interval_seconds),
            "MaxNotifyRetries": str(alert_max_notify_retries),
        }
        self.alert_sink: Any = None  # tdev_cli.alert_sink.AlertSink: webhooks, Slack and PagerDuty land here
        self.alert_intake_queue_url = ""
        self.default_model = default_model
        # How often functions re-read Parameter Store (tdev.config.live); tests shorten the 60 s default.
        self.config_poll_seconds = config_poll_seconds
        self.fallback_models = fallback_models  # models a request may fall back to (Bedrock stays real)
        self.api_timeout_seconds = api_timeout_seconds  # API Gateway's integration timeout (tests shorten it)
        self.substitutions = local_substitutions(
            retry_interval_seconds, max_transient_retries, max_verify_iterations=max_verify_iterations
        )
        self.fault_hook = fault_hook
        # The shared Redis: the one given, else REDIS_URL from the environment, else a private server.
        self.redis_url = redis_url or os.environ.get("REDIS_URL")
        self.invocations: list[tuple[str, str]] = []  # (function, outcome) in dispatch order
        self._stack: list[Any] = []
        # One invocation at a time: Lambda gives each concurrent invocation its own container, but here
        # they share one process, and Powertools' logger context (correlation id, function name) is
        # process-wide. Map iterations still run concurrently in the interpreter; handler bodies take turns.
        self._invocation_lock = threading.RLock()
        self._handler_time = threading.local()  # how long this thread's last handler call ran
        self._saved_env: dict[str, str | None] = {}
        self.state_machine_arn = ""
        self.escalation_arn = ""
        self.events_queue_url = ""
        # The local token issuer (tdev.security.issuer): `.tdev/keys` for `tdev serve`, else a private folder.
        self.keys_dir = Path(keys_dir) if keys_dir is not None else None
        self.rate_limit_default = rate_limit_default
        self.issuer: Any = None
        self.default_identity: tuple[str, tuple[str, ...]] = (LOCAL_USER, ("developer",))
        self.messaging: Any = None  # tdev_cli.local_messaging.LocalMessaging, made with the resources
        # Every AWS call each function makes (permissions from evidence: tdev_cli.permissions).
        self.aws_calls = CallRecorder()
        from tdev_cli.local_appconfig import LocalAppConfig

        self.appconfig = LocalAppConfig(account=ACCOUNT, region=REGION)

    # ----------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalRuntime:
        """Start the emulation. If starting fails part-way, what was started is stopped again before the
        error propagates (Python calls no __exit__ for a failed __enter__): a half-started runtime would
        leave moto's mock and the environment in place for everything that runs after it."""
        try:
            return self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def _start(self) -> LocalRuntime:
        # A Bedrock model stays real: take the user's credentials before the emulation replaces them.
        uses_bedrock = any(m.startswith("bedrock:") for m in (self.default_model, *self.fallback_models))
        bedrock_session = _real_aws_session() if uses_bedrock else None
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "TABLE_NAME": TABLE_NAME,
            "STATE_MACHINE_ARN": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STATE_MACHINE}",
            "TDEV_DEFAULT_MODEL": self.default_model,
            "TDEV_ENV": "local",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
            "AGNO_TELEMETRY": "false",
            "REDIS_URL": self._redis_url(),
            "KMS_KEY_ID": "",  # set once the emulated key exists (_create_resources)
            "TDEV_WRITE_BEHIND_DLQ_URL": "",  # set once the emulated queue exists (_create_resources)
            # The feature flags' AppConfig store: set once it exists (_create_resources).
            "TDEV_FLAGS_APPLICATION_ID": "",
            "TDEV_FLAGS_ENVIRONMENT_ID": "",
            "TDEV_FLAGS_PROFILE_ID": "",
            "TDEV_FLAGS_DEPLOYMENT_STRATEGY_ID": "",
            **self._security_environment(),
            "CHECKPOINT_BUCKET": CHECKPOINT_BUCKET,
            # Project workspaces in the emulated S3 bucket; tests run by the sandbox function.
            "WORKSPACE_BUCKET": WORKSPACE_BUCKET,
            # Through its `live` alias, as deployed (stacks/constructs/deployment.py).
            "SANDBOX_FUNCTION_NAME": f"{SANDBOX_FUNCTION}:{LIVE_ALIAS}",
            # The platform's API signing secret (signs cursors), created with the resources as the data
            # stack creates it (stacks/secrets.py); rotate_secret rotates it when asked.
            "TDEV_API_SIGNING_SECRET": API_SIGNING_SECRET,
            "TDEV_ALERT_ESCALATION_ARN": (
                f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{ESCALATION_STATE_MACHINE}"
            ),
            "TDEV_ALERT_SECRET_NAME": ALERT_SECRET,
            "TDEV_ALERT_ESCALATION_WAIT": str(self.alert_wait_seconds),
            "TDEV_ALERT_EMAIL_TOPIC_ARN": "",  # set once the emulated topics exist (_create_resources)
            "TDEV_ALERT_SMS_TOPIC_ARN": "",
        }
        if self.config_poll_seconds is not None:
            env["TDEV_CONFIG_POLL_SECONDS"] = str(self.config_poll_seconds)
        for key, value in env.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        from moto import mock_aws
        from moto.awslambda_simple.models import LambdaSimpleBackend

        config: dict[str, Any] = {
            "stepfunctions": {"execute_state_machine": True},
            "lambda": {"use_docker": False},
        }
        if bedrock_session is not None:
            config["core"] = {
                "mock_credentials": True,
                "passthrough": {"urls": [], "services": ["bedrock-runtime"]},
                "reset_boto3_session": True,
                "service_whitelist": None,
            }
        mocker = mock_aws(config=config)  # type: ignore[call-overload]
        mocker.start()
        self._stack.append(mocker.stop)
        self.aws_calls.start()
        self._stack.append(self.aws_calls.stop)
        if bedrock_session is not None:
            from tdev.llm.catalog import use_bedrock_session

            use_bedrock_session(bedrock_session)
            self._stack.append(lambda: use_bedrock_session(None))
        runtime = self

        def dispatch(
            backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
        ) -> bytes:
            return runtime._dispatch(function_name, body, response_headers)

        patcher = mock.patch.object(LambdaSimpleBackend, "invoke", dispatch)
        patcher.start()
        self._stack.append(patcher.stop)
        self._stack.append(_terminal_errors_escape_states_all())
        self._stack.append(_atomic_dynamodb_writes())
        self._stack.append(_stopped_executions_stay_aborted())
        # AppConfig's environments, deployments and data plane, which moto lacks (the feature flags' store).
        self.appconfig.start()
        self._stack.append(self.appconfig.stop)

        from tdev import container

        container.reset()
        clear_read_cache()
        self._create_resources()
        container.reset()  # settings re-read with the resources' ids (KMS_KEY_ID)
        # The built-in agents, upserted as a deploy's first cold start does (tdev.data.agents).
        container.agents().ensure_builtins()
        # Every function's init (its module-level imports) before the first request, as each Lambda
        # function's happens at its own cold start, not inside another function's invocation.
        for name in (*FUNCTIONS, *MESSAGING_FUNCTIONS, *REALTIME_FUNCTIONS, "authorizer"):
            importlib.import_module(f"functions.{name}.handler")
        return self

    def _security_environment(self) -> dict[str, str]:
        """Tokens from the local issuer are what the authorizer accepts; the application rate limit."""
        from tdev.security.issuer import LocalIssuer

        if self.keys_dir is None:
            import tempfile

            from tdev_cli import watchdog

            watchdog.sweep_stale()  # what a process killed with its watchdog left behind
            folder = tempfile.TemporaryDirectory(prefix=watchdog.owned_prefix("keys"))
            watchdog.guard_directory(folder.name)  # the signing key goes even if we are SIGKILLed
            self._stack.append(lambda: watchdog.release_directory(folder.name))  # after the cleanup
            self._stack.append(folder.cleanup)
            self.keys_dir = Path(folder.name)
        self.issuer = LocalIssuer(self.keys_dir)
        env = self.issuer.environment()
        if self.rate_limit_default is not None:
            env["TDEV_RATE_LIMIT_DEFAULT"] = self.rate_limit_default
        return env

    def token(
        self, user: str = LOCAL_USER, roles: tuple[str, ...] = ("developer",), ttl_seconds: int = 3600
    ) -> str:
        """A bearer token of the local issuer (what `tdev token` prints)."""
        return str(self.issuer.issue(user, roles, ttl_seconds=ttl_seconds)[0])

    def as_principal(self, user: str, roles: tuple[str, ...] = ("developer",)) -> LocalRuntime:
        """Send later `api()` calls without their own credentials as `user` with `roles`."""
        self.default_identity = (user, roles)
        return self

    def _redis_url(self) -> str:
        if not self.redis_url:
            from tdev_cli.redis_server import RedisServer

            server = RedisServer().start()
            self._stack.append(server.stop)
            self.redis_url = server.url
        return self.redis_url

    def __exit__(self, *exc: object) -> None:
        while self._stack:
            self._stack.pop()()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        from tdev import container

        container.reset()

    def _create_resources(self) -> None:
        import boto3

        from tdev.data.schema import create_table_kwargs

        boto3.client("dynamodb", region_name=REGION).create_table(**create_table_kwargs(TABLE_NAME))
        # The customer-managed key for field-level envelope encryption (KMS_KEY_ID in the stacks).
        key_id = boto3.client("kms", region_name=REGION).create_key(Description="tdev local data key")[
            "KeyMetadata"
        ]["KeyId"]
        os.environ["KMS_KEY_ID"] = key_id
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=CHECKPOINT_BUCKET)
        import secrets as random

        boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name=API_SIGNING_SECRET, SecretString=random.token_urlsafe(48), KmsKeyId=key_id
        )
        # The feature flags' AppConfig store with the product flags' defaults deployed, as the data stack
        # creates it (stacks/configuration.py; tdev.config.flag_store's definitions).
        from tdev_cli.local_appconfig import create_flag_store

        os.environ.update(create_flag_store("local"))
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=WORKSPACE_BUCKET)
        # Encrypted by default under its own key, as the stack makes it (stacks/workspaces.py): the code
        # names no key, so an object must come out under this one, not the field key above.
        workspace_key = boto3.client("kms", region_name=REGION).create_key(
            Description="tdev local workspace key"
        )["KeyMetadata"]["Arn"]
        encrypt_by_default(s3, WORKSPACE_BUCKET, workspace_key)
        events = boto3.client("events", region_name=REGION)
        events.create_event_bus(Name=EVENT_BUS)
        sqs = boto3.client("sqs", region_name=REGION)
        self.events_queue_url = sqs.create_queue(QueueName="tdev-local-events")["QueueUrl"]
        # Run statistics that failed every write (tdev.write_behind), as the orchestration stack makes it.
        os.environ["TDEV_WRITE_BEHIND_DLQ_URL"] = sqs.create_queue(QueueName=WRITE_BEHIND_DLQ)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.events_queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name="all-t-developer-events",
            EventBusName=EVENT_BUS,
            EventPattern=json.dumps({"source": [{"prefix": "t-developer."}]}),
        )
        events.put_targets(
            Rule="all-t-developer-events",
            EventBusName=EVENT_BUS,
            Targets=[{"Id": "capture", "Arn": queue_arn}],
        )
        iam = boto3.client("iam", region_name=REGION)
        role_arn = iam.create_role(
            RoleName="tdev-local",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("handler.py", "# dispatched in process by the local runtime\n")
        lam = boto3.client("lambda", region_name=REGION)
        for name in FUNCTIONS:
            lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role_arn,
                Handler="handler.lambda_handler",
                Code={"ZipFile": archive.getvalue()},
                Architectures=["arm64"],
            )
        from statemachines.request_workflow import render_definition

        self.state_machine_arn = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name=STATE_MACHINE, definition=render_definition(self.substitutions), roleArn=role_arn
        )["stateMachineArn"]
        from tdev_cli.local_messaging import LocalMessaging, share_stream_in_transaction_snapshots

        self._stack.append(share_stream_in_transaction_snapshots())
        self.messaging = LocalMessaging(TABLE_NAME, self._dispatch_messaging).create()
        self._create_alerting(role_arn)

    def _create_alerting(self, role_arn: str) -> None:
        """The alert pipeline as the stack builds it: SNS topics, the channels' secret (pointing at a local
        sink on 127.0.0.1), the bus rules (their events land on a queue that `deliver_alerts` hands to the
        intake function, as EventBridge's Lambda target would) and the escalation state machine."""
        import secrets as token_source

        import boto3

        from statemachines.alert_escalation import escalation_substitutions, render_escalation
        from tdev.alerts.channels import forget_secret
        from tdev.alerts.model import alarms_rule_pattern, errors_rule_pattern
        from tdev_cli.alert_sink import AlertSink

        self.alert_sink = AlertSink().start()
        self._stack.append(self.alert_sink.stop)
        sns = boto3.client("sns", region_name=REGION)
        for variable, name in (("TDEV_ALERT_EMAIL_TOPIC_ARN", "email"), ("TDEV_ALERT_SMS_TOPIC_ARN", "sms")):
            os.environ[variable] = sns.create_topic(Name=f"tdev-local-alerts-{name}")["TopicArn"]
        boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name=ALERT_SECRET,
            SecretString=json.dumps(
                {
                    "webhook_url": f"{self.alert_sink.url}/webhook",
                    "webhook_signing_key": token_source.token_hex(16),
                    "slack_webhook_url": f"{self.alert_sink.url}/slack",
                    "pagerduty_url": f"{self.alert_sink.url}/pagerduty",
                    "pagerduty_routing_key": token_source.token_hex(16),
                }
            ),
        )
        forget_secret()
        sqs = boto3.client("sqs", region_name=REGION)
        self.alert_intake_queue_url = sqs.create_queue(QueueName=ALERT_INTAKE_QUEUE)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(
            QueueUrl=self.alert_intake_queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        events = boto3.client("events", region_name=REGION)
        for rule, bus, pattern in (
            ("alert-intake-errors", EVENT_BUS, errors_rule_pattern()),
            ("alert-intake-alarms", "default", alarms_rule_pattern(ALERT_ALARM_PREFIX)),
        ):
            events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern))
            events.put_targets(
                Rule=rule, EventBusName=bus, Targets=[{"Id": "alert-intake", "Arn": queue_arn}]
            )
        self.escalation_arn = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name=ESCALATION_STATE_MACHINE,
            definition=render_escalation(
                escalation_substitutions(
                    function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:alert_escalation",
                    tuning=self.alert_tuning,
                )
            ),
            roleArn=role_arn,
        )["stateMachineArn"]

    def publish(self, source: str, detail_type: str, detail: dict[str, Any], *, bus: str = EVENT_BUS) -> None:
        """Put one event on a local bus (the platform's, or `default` for CloudWatch's alarm events)."""
        import boto3

        answer = boto3.client("events", region_name=REGION).put_events(
            Entries=[
                {
                    "Source": source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "EventBusName": bus,
                }
            ]
        )
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"the bus refused the event: {answer['Entries']}")

    def deliver_alerts(self) -> list[dict[str, Any]]:
        """What EventBridge's Lambda target does in AWS: every event the alert rules matched goes to the
        intake function, one invocation each, in order. Returns the intake's answers."""
        import boto3

        sqs = boto3.client("sqs", region_name=REGION)
        outcomes: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=self.alert_intake_queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return outcomes
            for message in messages:
                event = json.loads(message["Body"])
                # moto's queue target leaves out `account`, which EventBridge's Lambda target always sends.
                event.setdefault("account", ACCOUNT)
                outcomes.append(dict(self.invoke("alert_intake", event)))
                sqs.delete_message(
                    QueueUrl=self.alert_intake_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def _dispatch_messaging(self, name: str, event: dict[str, Any]) -> Any:
        """An event source mapping's invocation: through the fault hook, then the real handler."""
        try:
            if self.fault_hook is not None:
                self.fault_hook(name, event)
            result = self.invoke(name, event)
        except Exception as exc:
            self.invocations.append((name, type(exc).__name__))
            raise
        self.invocations.append((name, "ok"))
        return result

    def reconcile(self, *, later_by: float = 0.0) -> dict[str, Any]:
        """What the every-minute schedule does in AWS: one run of the execution reconciler, as of now or of
        a tick `later_by` seconds from now (what it will do then, without waiting)."""
        event = json.loads((REPO_ROOT / "events" / "reconcile_executions.json").read_text())
        event["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + later_by))
        return dict(self.invoke("reconcile_executions", event))

    def drain_messaging(self) -> int:
        """Deliver everything pending: outbox stream -> bus -> queues -> consumers, until quiet."""
        return int(self.messaging.drain())

    # ------------------------------------------------------------------------------------ dispatch
    def _dispatch(self, function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        # A name, a qualified name (name:alias) or an ARN (arn:aws:lambda:region:account:function:name...).
        parts = function_name.split(":")
        name = parts[6] if function_name.startswith("arn:") else parts[0]
        event = json.loads(body) if body else {}
        try:
            if self.fault_hook is not None:
                self.fault_hook(name, event)
            result = self.invoke(name, event)
        except Exception as exc:  # reported to the interpreter as AWS reports an unhandled error
            self.invocations.append((name, type(exc).__name__))
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {
                    "errorType": getattr(exc, "error_type", type(exc).__name__),
                    "errorMessage": str(exc),
                    # As Lambda's Python runtime reports it: every frame, outermost first.
                    "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
                }
            ).encode()
        self.invocations.append((name, "ok"))
        return json.dumps(result).encode()

    def invoke(self, function: str, event: dict[str, Any], *, take_turn: bool = True) -> Any:
        """Call a function's real handler with an event, as Lambda would.

        `take_turn=False`: run now, beside whatever handler has the turn (the kill switch, see `http`)."""
        if function not in (*FUNCTIONS, *MESSAGING_FUNCTIONS, *REALTIME_FUNCTIONS, "authorizer"):
            raise ValueError(f"unknown function {function}")
        module = importlib.import_module(f"functions.{function}.handler")
        request_bytes = _payload_bytes(event)
        if request_bytes > LAMBDA_SYNC_PAYLOAD_BYTES:
            raise RequestEntityTooLargeException(
                f"{request_bytes} byte payload is too large for the RequestResponse invocation type "
                f"(limit {LAMBDA_SYNC_PAYLOAD_BYTES} bytes)"
            )
        turn = self._invocation_lock if take_turn else _logger_keys_kept()
        with turn, running(function):
            started = time.monotonic()
            try:
                result = module.lambda_handler(event, LambdaContext(function_name=function))
            finally:
                self._handler_time.seconds = time.monotonic() - started
        if _payload_bytes(result) > LAMBDA_SYNC_PAYLOAD_BYTES:
            raise ResponseSizeTooLarge(
                "Response payload size exceeded maximum allowed payload size "
                f"({LAMBDA_SYNC_PAYLOAD_BYTES} bytes)."
            )
        return result

    # ------------------------------------------------------------------------------------- the API
    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw_body: str | None = None,
        *,
        authenticate: bool = True,
    ) -> tuple[int, Any]:
        """Send one HTTP request as API Gateway would: the authorizer (except on public routes), then the API.

        Without an Authorization or X-Api-Key header, a token of the local developer is added unless
        `authenticate=False` (a request with no identity)."""
        headers = dict(headers or {})
        if authenticate and not {h.lower() for h in headers} & {"authorization", "x-api-key"}:
            user, roles = self.default_identity
            headers["Authorization"] = f"Bearer {self.token(user, roles)}"
        response = self.http(
            method,
            path,
            headers,
            raw_body if raw_body is not None else (json.dumps(body) if body is not None else None),
        )
        payload = response.get("body") or "null"
        if response.get("isBase64Encoded"):
            payload = base64.b64decode(payload).decode()
        return int(response["statusCode"]), json.loads(payload)

    def http(
        self, method: str, path: str, headers: dict[str, str], body: str | None, source_ip: str = "127.0.0.1"
    ) -> dict[str, Any]:
        """One request through API Gateway's steps: authorizer (not on public routes) → API function.

        Returns the proxy response (statusCode, headers, body). A failed authorizer answers 401 and a
        Deny policy 403, with the JSON bodies the API stack configures as gateway responses."""
        if body is not None and len(body.encode()) > API_GATEWAY_PAYLOAD_BYTES:
            return aws_gateway_response(413, "Request Too Long")  # before any authorizer or integration
        path, _, query = path.partition("?")  # API Gateway hands the handler the query string parsed
        event = api_event(method, path, headers=headers, raw_body=body, query=query)
        context = event["requestContext"]
        context["identity"] = {**context.get("identity", {}), "sourceIp": source_ip}
        from tdev.security.routes import is_public

        # The kill switch must not queue behind the work it stops: deployed, every invocation has its own
        # container; here handler bodies take turns, and a looping agent would keep the turn for ever.
        beside: dict[str, Any] = (  # passed only when set: tests and benchmarks wrap `invoke`
            {"take_turn": False} if method.upper() == "POST" and KILL_SWITCH_PATH.fullmatch(path) else {}
        )
        if not is_public(method, path):
            stage = event["requestContext"].get("stage", "local")
            method_arn = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:local/{stage}/{method}{path}"
            try:
                result = self.invoke(
                    "authorizer",
                    {
                        "type": "REQUEST",
                        "methodArn": method_arn,
                        "headers": event["headers"],
                        "requestContext": event["requestContext"],
                    },
                    **beside,
                )
            except Exception as exc:
                if str(exc) != "Unauthorized":
                    raise
                return gateway_response(401, "Unauthorized", "authentication required or credentials invalid")
            statement = result["policyDocument"]["Statement"][0]
            if statement["Effect"] != "Allow":
                return gateway_response(403, "Forbidden", "the authorizer denied this request")
            context["authorizer"] = {"principalId": result["principalId"], **result["context"]}
        self._handler_time.seconds = 0.0
        try:
            response = dict(self.invoke("api", event, **beside))
        except (RequestEntityTooLargeException, ResponseSizeTooLarge):
            # The integration failed (Lambda refused the event, or the function's answer was too large).
            return aws_gateway_response(502, "Internal server error")
        # The function's own run time: not the wait for this process's invocation lock, which a deployed
        # function (its own container) never has. Under load the wait made a timeout out of nothing.
        if self._handler_time.seconds > self.api_timeout_seconds:
            # API Gateway stops waiting at 29 s (the function runs on, its answer is lost).
            return aws_gateway_response(504, "Endpoint request timed out")
        # What the client sees: API Gateway merges `multiValueHeaders` and `headers` into one set.
        merged = {k: ", ".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()}
        response["headers"] = {**merged, **(response.get("headers") or {})}
        return response

    def submit(self, request: str, **fields: Any) -> str:
        status, body = self.api("POST", "/v1/requests", {"request": request, **fields})
        if status not in (200, 202):
            raise RuntimeError(f"request rejected ({status}): {body}")
        return str(body["execution_id"])

    def follow(
        self, execution_id: str, *, timeout: float = 300.0, interval: float = 0.2
    ) -> Iterator[dict[str, Any]]:
        """Yield the execution view each time it changes, until its state machine execution ends."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            done = self.workflow_status(execution_id) != "RUNNING"
            status, view = self.api("GET", f"/v1/executions/{execution_id}")
            if status == 200 and view != last:
                last = view
                yield view
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_id} did not finish within {timeout:.0f} s")
            time.sleep(interval)

    def run(self, request: str, *, timeout: float = 300.0, **fields: Any) -> dict[str, Any]:
        """Submit a request and wait for the workflow to end; returns the final execution view."""
        return self.wait(self.submit(request, **fields), timeout=timeout)

    def wait(self, execution_id: str, *, timeout: float = 300.0) -> dict[str, Any]:
        """The execution view once its workflow has ended."""
        views = deque(self.follow(execution_id, timeout=timeout), maxlen=1)
        return views[0] if views else {}

    def workflow_status(self, execution_id: str) -> str:
        """The state machine execution's status: RUNNING, SUCCEEDED, FAILED, ..."""
        import boto3

        arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STATE_MACHINE}:{execution_id}"
        return str(
            boto3.client("stepfunctions", region_name=REGION).describe_execution(executionArn=arn)["status"]
        )

    def published_events(self) -> list[dict[str, Any]]:
        """Events the workflow put on the bus (captured by a catch-all rule into a queue)."""
        import boto3

        sqs = boto3.client("sqs", region_name=REGION)
        events: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=self.events_queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return events
            for message in messages:
                events.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.events_queue_url, ReceiptHandle=message["ReceiptHandle"])


KILL_SWITCH_PATH = re.compile(
    r"/v1/executions/[A-Za-z0-9-]+/cancel|/v1/sessions/ses-[a-f0-9]+/kill|/v1/users/[A-Za-z0-9@._:-]+/suspend"
)


@contextlib.contextmanager
def _logger_keys_kept() -> Iterator[None]:
    """A handler run beside the one that has the turn: afterwards the functions' logger carries that one's
    keys again (Powertools' keys are process-wide), not the keys this run appended."""
    from tdev.observability import logger

    saved = dict(logger.get_current_keys())
    try:
        yield
    finally:
        added = [key for key in logger.get_current_keys() if key not in saved]
        if added:
            logger.remove_keys(added)
        logger.append_keys(**saved)


def _payload_bytes(value: Any) -> int:
    """The size of a payload as Lambda receives it: JSON, binary values (stream records) base64-encoded."""

    def encoded(item: Any) -> str:
        if isinstance(item, bytes | bytearray):
            return base64.b64encode(item).decode()
        return str(item)

    return len(json.dumps(value, default=encoded).encode())


def _terminal_errors_escape_states_all() -> Callable[[], None]:
    """As in Step Functions, `States.ALL` does not catch or retry the terminal States.DataLimitExceeded and
    States.Runtime errors (moto's interpreter matches them): they fail the execution unless named.
    Returns the function that undoes the patch."""
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )

    terminal = {StatesErrorNameType.StatesStatesDataLimitExceeded, StatesErrorNameType.StatesRuntime}
    original = ErrorEqualsDecl._eval_body

    def eval_body(self: Any, env: Any) -> None:
        error = env.stack[-1] if env.stack else None
        if isinstance(error, StatesErrorName) and error.typ in terminal and error not in self.error_names:
            env.stack.pop()
            env.stack.append(False)
            return
        original(self, env)

    # A Map iteration that failed with a States.* error re-raises it under the same (States.*) name, as
    # Step Functions does; moto would make it States.Runtime ("custom names must not begin with States.").
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import iteration_worker

    def error_name_of(error_name: str | None) -> Any:
        if error_name is not None and error_name.startswith("States."):
            return StatesErrorName.from_name(error_name)
        return CustomErrorName(error_name=error_name)

    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName

    patchers: list[Any] = [
        mock.patch.object(ErrorEqualsDecl, "_eval_body", eval_body),
        mock.patch.object(iteration_worker, "CustomErrorName", error_name_of),
    ]
    for patcher in patchers:
        patcher.start()

    def stop() -> None:
        for patcher in reversed(patchers):
            patcher.stop()

    return stop


def clear_read_cache() -> int:
    """Delete every entry, tag and counter of the read cache (tdev.caching) in the shared Redis, and this
    process's caches: a runtime's table is new, so nothing a runtime before it cached may be served from
    it (a new deployment starts with a new cache). SCAN on every node, one key per DEL: cluster-safe. The
    deployed layer never lists the keyspace (tests/unit/test_cache.py); this is the emulation's start.
    Returns how many keys were deleted."""
    from tdev import cache, caching

    client = cache.redis_client()
    deleted = sum(int(client.delete(key)) for key in client.scan_iter(match="tdev:cache:*", count=1000))
    caching.reset()
    return deleted


def _atomic_dynamodb_writes() -> Callable[[], None]:
    """As in DynamoDB, a conditional write checks its condition and writes in one step. Moto checks, then
    writes, without a lock: two threads (the parallel tasks of a level reserving from one budget) could both
    pass one condition. Its writes take turns here. Returns the function that undoes the patch."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    patchers = []
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def atomic(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        patchers.append(mock.patch.object(DynamoDBBackend, name, atomic))
    for patcher in patchers:
        patcher.start()

    def stop() -> None:
        for patcher in reversed(patchers):
            patcher.stop()

    return stop


def _stopped_executions_stay_aborted() -> Callable[[], None]:
    """As in Step Functions, a stopped execution (StopExecution: the kill switch) ends ABORTED and runs
    nothing more. Moto's interpreter stops too, but a Task still in flight that fails afterwards overwrote
    the stop with its error (FAILED). Returns the function that undoes the patch."""
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped

    original = Environment.set_error

    def set_error(self: Any, error: Any) -> None:
        if isinstance(self._program_state, ProgramStopped):
            return
        original(self, error)

    # A stop right after the start (a cancel as soon as a request is accepted) found moto's worker thread
    # without its environment yet and failed; Step Functions stops such an execution too.
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    original_stop = ExecutionWorker.stop

    def stop(self: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
        deadline = time.monotonic() + 5
        while self.env is None and time.monotonic() < deadline:
            time.sleep(0.01)
        original_stop(self, stop_date=stop_date, error=error, cause=cause)

    patchers: list[Any] = [
        mock.patch.object(Environment, "set_error", set_error),
        mock.patch.object(ExecutionWorker, "stop", stop),
    ]
    for patcher in patchers:
        patcher.start()

    def undo() -> None:
        for patcher in reversed(patchers):
            patcher.stop()

    return undo


def _real_aws_session() -> Any:
    """A boto3 Session frozen on the user's own credentials (profile, env or SSO), or an error."""
    import boto3

    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise RuntimeError(
            "a bedrock: model needs AWS credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID/...); none were found"
        )
    frozen = credentials.get_frozen_credentials()
    return boto3.Session(
        aws_access_key_id=frozen.access_key,
        aws_secret_access_key=frozen.secret_key,
        aws_session_token=frozen.token,
        region_name=session.region_name or REGION,
    )


def gateway_response(status: int, error: str, message: str) -> dict[str, Any]:
    """What API Gateway answers itself (UNAUTHORIZED / ACCESS_DENIED gateway responses of the API stack)."""
    from tdev.security.headers import with_security_headers

    return with_security_headers(
        {
            "statusCode": status,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"error": error, "message": message}),
        }
    )


def aws_gateway_response(status: int, message: str) -> dict[str, Any]:
    """API Gateway's own default answer (no gateway response configured for it): `{"message": ...}`."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"message": message}),
    }


def encrypt_by_default(s3: Any, bucket: str, key_arn: str) -> None:
    """Default encryption as the stack gives the workspace bucket: SSE-KMS under `key_arn`, bucket key on."""
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key_arn,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )


def api_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw_body: str | None = None,
    query: str = "",
) -> dict[str, Any]:
    """An API Gateway REST proxy event, built from the sample in events/ so tests and runtime agree."""
    from urllib.parse import parse_qsl

    template = json.loads((REPO_ROOT / "events" / "api_post_request.json").read_text())
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
        multi_query.setdefault(name, []).append(value)
    request_id = str(uuid.uuid4())
    all_headers = {"Content-Type": "application/json", "Host": "localhost", **(headers or {})}
    template.update(
        {
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": all_headers,
            "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
            "pathParameters": {"proxy": path.lstrip("/")},
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "body": raw_body if raw_body is not None else (json.dumps(body) if body is not None else None),
            "isBase64Encoded": False,
        }
    )
    template["requestContext"] = {
        **template["requestContext"],
        "requestId": request_id,
        "httpMethod": method,
        "path": path,  # tdev serve has no stage in its URLs (deployed: /<stage><path>)
        "resourcePath": "/{proxy+}",
    }
    return template
