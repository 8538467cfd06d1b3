"""Each function's environment variables as a typed model: the contract between the stacks and the code.

The stacks set exactly the variables of a function's model (`functions/registry.py` names the model of each
function; tests/infrastructure checks the synthesized templates against it), and each handler validates its
model at cold start, so a deployment that forgets or mangles a variable fails at init with the variable's
name instead of deep inside a request. Names are only spelled here, never as strings elsewhere.

Defaults are the local runtime's values. Outside Lambda (`AWS_LAMBDA_FUNCTION_NAME` unset) handlers import
without validating, so tests can import them before they set a deployment's variables; the domain still
reads its settings through `tdev.settings`, validated on first use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from enum import StrEnum
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tdev.errors import ConfigurationError
from tdev.version import __version__


class Var(StrEnum):
    """Every environment variable a stack sets on a function, for the code that names one (stacks, tests).

    The models below spell each name once more as the field alias (pydantic's typing needs literals there);
    tests/unit/test_environment.py checks the two agree."""

    POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
    POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
    POWERTOOLS_LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
    AGNO_TELEMETRY = "AGNO_TELEMETRY"
    TDEV_ENV = "TDEV_ENV"
    TDEV_VERSION = "TDEV_VERSION"
    REDIS_URL = "REDIS_URL"
    TABLE_NAME = "TABLE_NAME"
    KMS_KEY_ID = "KMS_KEY_ID"
    STATE_MACHINE_ARN = "STATE_MACHINE_ARN"
    TDEV_DEFAULT_MODEL = "TDEV_DEFAULT_MODEL"
    TDEV_CORS_ORIGINS = "TDEV_CORS_ORIGINS"
    TDEV_USAGE_PLAN_NAME = "TDEV_USAGE_PLAN_NAME"
    TDEV_INTERACTIVE_API_KEY_ID = "TDEV_INTERACTIVE_API_KEY_ID"
    TDEV_JWT_ISSUER = "TDEV_JWT_ISSUER"
    TDEV_JWT_AUDIENCE = "TDEV_JWT_AUDIENCE"
    TDEV_JWT_ROLES_CLAIM = "TDEV_JWT_ROLES_CLAIM"
    TDEV_JWT_TOKEN_USE = "TDEV_JWT_TOKEN_USE"
    CHECKPOINT_BUCKET = "CHECKPOINT_BUCKET"
    TDEV_EMBEDDINGS = "TDEV_EMBEDDINGS"
    TDEV_PROVIDER_SECRETS = "TDEV_PROVIDER_SECRETS"
    WORKSPACE_BUCKET = "WORKSPACE_BUCKET"
    SANDBOX_FUNCTION_NAME = "SANDBOX_FUNCTION_NAME"
    EVENT_BUS_NAME = "EVENT_BUS_NAME"
    IDEMPOTENCY_TABLE_NAME = "IDEMPOTENCY_TABLE_NAME"
    AGENT_EXECUTION_QUEUE_URL = "AGENT_EXECUTION_QUEUE_URL"
    TDEV_API_SIGNING_SECRET = "TDEV_API_SIGNING_SECRET"
    # Alerting (tdev.alerts)
    TDEV_ALERT_ESCALATION_ARN = "TDEV_ALERT_ESCALATION_ARN"
    TDEV_ALERT_SECRET_NAME = "TDEV_ALERT_SECRET_NAME"
    TDEV_ALERT_EMAIL_TOPIC_ARN = "TDEV_ALERT_EMAIL_TOPIC_ARN"
    TDEV_ALERT_SMS_TOPIC_ARN = "TDEV_ALERT_SMS_TOPIC_ARN"
    TDEV_WRITE_BEHIND_DLQ_URL = "TDEV_WRITE_BEHIND_DLQ_URL"
    # The feature flags' AppConfig store (tdev.config.flag_store)
    TDEV_FLAGS_APPLICATION_ID = "TDEV_FLAGS_APPLICATION_ID"
    TDEV_FLAGS_ENVIRONMENT_ID = "TDEV_FLAGS_ENVIRONMENT_ID"
    TDEV_FLAGS_PROFILE_ID = "TDEV_FLAGS_PROFILE_ID"
    TDEV_FLAGS_DEPLOYMENT_STRATEGY_ID = "TDEV_FLAGS_DEPLOYMENT_STRATEGY_ID"
    # Live progress (tdev.realtime): the WebSocket API's management endpoint, for the pusher
    TDEV_WEBSOCKET_ENDPOINT = "TDEV_WEBSOCKET_ENDPOINT"


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class FunctionEnvironment(BaseModel):
    """What every function gets (the shared construct sets these)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    # Variables whose presence depends on the deployment (e.g. REDIS_URL only for functions in the VPC).
    optional_in_stack: ClassVar[frozenset[str]] = frozenset()

    service_name: str = Field(default="t-developer", min_length=1, alias="POWERTOOLS_SERVICE_NAME")
    metrics_namespace: str = Field(default="TDeveloper", min_length=1, alias="POWERTOOLS_METRICS_NAMESPACE")
    log_level: LogLevel = Field(default="INFO", alias="POWERTOOLS_LOG_LEVEL")
    agno_telemetry: Literal["false"] = Field(default="false", alias="AGNO_TELEMETRY")
    environment: str = Field(default="local", min_length=1, alias="TDEV_ENV")
    # The release the function was deployed from (tdev.version), for logs and support.
    version: str = Field(default=__version__, min_length=1, alias="TDEV_VERSION")

    @classmethod
    def variables(cls) -> frozenset[str]:
        """The variable names of this contract (what the stack must set, see `optional_in_stack`)."""
        return frozenset(str(field.alias) for field in cls.model_fields.values())

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Validate the environment; a ConfigurationError names every missing or invalid variable."""
        try:
            return cls.model_validate(dict(os.environ if environ is None else environ))
        except ValidationError as exc:
            names = ", ".join(sorted({str(err["loc"][0]) for err in exc.errors()}))
            raise ConfigurationError(f"invalid or missing environment variables: {names}") from exc

    @classmethod
    def at_cold_start(cls) -> Self:
        """Called at a handler's module level: validates in Lambda (where the stack set the variables)."""
        if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            return cls.load()
        return cls.model_construct()


class _InVpc(FunctionEnvironment):
    """Functions in the cache's VPC get the Redis endpoint."""

    optional_in_stack: ClassVar[frozenset[str]] = frozenset({Var.REDIS_URL})
    redis_url: str | None = Field(default=None, pattern=r"^rediss?://", alias="REDIS_URL")


class _OnTheTable(_InVpc):
    table_name: str = Field(min_length=3, alias="TABLE_NAME")
    kms_key_id: str | None = Field(default=None, alias="KMS_KEY_ID")


class _ReadsFlags(FunctionEnvironment):
    """Functions that evaluate feature flags: the AppConfig application, environment and profile."""

    flags_application_id: str | None = Field(default=None, min_length=1, alias="TDEV_FLAGS_APPLICATION_ID")
    flags_environment_id: str | None = Field(default=None, min_length=1, alias="TDEV_FLAGS_ENVIRONMENT_ID")
    flags_profile_id: str | None = Field(default=None, min_length=1, alias="TDEV_FLAGS_PROFILE_ID")


class WorkflowEnvironment(_OnTheTable):
    """plan_request, run_agent, record_task_failure, aggregate_results, compensate."""

    default_model: str = Field(default="offline:tdev-offline-1", min_length=3, alias="TDEV_DEFAULT_MODEL")


class TaskFailureEnvironment(WorkflowEnvironment, _ReadsFlags):
    """record_task_failure: records the failed task's model chain (the fallback_chain flag decides it)."""


class ModelCallerEnvironment(WorkflowEnvironment):
    """Functions that call models (run_agent; the API and the sweeper through sessions)."""

    # Set only when an enabled provider authenticates with an API key (-c providers=bedrock,openai).
    optional_in_stack: ClassVar[frozenset[str]] = frozenset({Var.REDIS_URL, Var.TDEV_PROVIDER_SECRETS})
    # {"openai": "<secret name>", ...}: the enabled providers' API keys in Secrets Manager.
    provider_secrets: dict[str, str] = Field(default_factory=dict, alias="TDEV_PROVIDER_SECRETS")

    @field_validator("provider_secrets", mode="before")
    @classmethod
    def _json(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value


class WorkspaceEnvironment(WorkflowEnvironment, _ReadsFlags):
    """run_project_tests: the execution's workspace and the test sandbox it invokes."""

    workspace_bucket: str | None = Field(default=None, min_length=3, alias="WORKSPACE_BUCKET")
    sandbox_function_name: str | None = Field(default=None, min_length=1, alias="SANDBOX_FUNCTION_NAME")


class AgentEnvironment(ModelCallerEnvironment, _ReadsFlags):
    """run_agent, fix_failing_tests: models, the workspace and the test sandbox."""

    workspace_bucket: str | None = Field(default=None, min_length=3, alias="WORKSPACE_BUCKET")
    sandbox_function_name: str | None = Field(default=None, min_length=1, alias="SANDBOX_FUNCTION_NAME")


class RunAgentEnvironment(AgentEnvironment):
    """run_agent: also the dead-letter queue of the run statistics it writes behind (tdev.write_behind)."""

    write_behind_dlq_url: str | None = Field(default=None, min_length=8, alias="TDEV_WRITE_BEHIND_DLQ_URL")


class ReconcilerEnvironment(WorkflowEnvironment):
    """reconcile_executions: starts workflows left unstarted."""

    state_machine_arn: str | None = Field(default=None, pattern=r"^arn:", alias="STATE_MACHINE_ARN")


class SandboxEnvironment(FunctionEnvironment):
    """The test sandbox: reads nothing but its payload (isolated network; REDIS_URL is set empty)."""

    optional_in_stack: ClassVar[frozenset[str]] = frozenset({Var.REDIS_URL})
    redis_url: str = Field(default="", alias="REDIS_URL")


class _RunsSessions(ModelCallerEnvironment):
    checkpoint_bucket: str | None = Field(default=None, min_length=3, alias="CHECKPOINT_BUCKET")
    embeddings: Literal["auto", "bedrock", "minilm", "hashing"] = Field(
        default="auto", alias="TDEV_EMBEDDINGS"
    )


class ApiEnvironment(_RunsSessions, _ReadsFlags):
    workspace_bucket: str | None = Field(default=None, min_length=3, alias="WORKSPACE_BUCKET")
    state_machine_arn: str | None = Field(default=None, pattern=r"^arn:", alias="STATE_MACHINE_ARN")
    cors_origins: str = Field(default="", alias="TDEV_CORS_ORIGINS")
    usage_plan_name: str | None = Field(default=None, alias="TDEV_USAGE_PLAN_NAME")
    # The platform's API signing secret (its name): the API signs the cursors it hands out with it.
    api_signing_secret: str | None = Field(default=None, min_length=1, alias="TDEV_API_SIGNING_SECRET")
    # The API changes the flags: it deploys each new version with this strategy.
    flags_deployment_strategy_id: str | None = Field(
        default=None, min_length=1, alias="TDEV_FLAGS_DEPLOYMENT_STRATEGY_ID"
    )


class SessionSweeperEnvironment(_RunsSessions):
    """The sweeper: expiry, idle timeout and heartbeat recovery of sessions."""


class _Authenticates(_OnTheTable):
    """The authorizer's checks: JWTs of the issuer and API keys (tdev.security.authorizer.authenticate)."""

    jwt_issuer: str | None = Field(default=None, min_length=1, alias="TDEV_JWT_ISSUER")
    jwt_audience: str | None = Field(default=None, min_length=1, alias="TDEV_JWT_AUDIENCE")
    jwt_roles_claim: str = Field(default="cognito:groups", min_length=1, alias="TDEV_JWT_ROLES_CLAIM")
    # Cognito: access (ID tokens refused); empty for generic OIDC issuers with no such claim.
    jwt_token_use: str = Field(default="access", pattern=r"^(access|id|)$", alias="TDEV_JWT_TOKEN_USE")


class AuthorizerEnvironment(_Authenticates):
    interactive_api_key_id: str | None = Field(default=None, alias="TDEV_INTERACTIVE_API_KEY_ID")


class MessagingEnvironment(FunctionEnvironment):
    """The outbox publisher and the queue consumers (not in the VPC: no Redis)."""

    table_name: str = Field(min_length=3, alias="TABLE_NAME")
    event_bus_name: str = Field(default="t-developer", min_length=1, alias="EVENT_BUS_NAME")
    idempotency_table_name: str = Field(default="", alias="IDEMPOTENCY_TABLE_NAME")


class OutboxPublisherEnvironment(MessagingEnvironment):
    """The outbox publisher also sends task completions straight to the agent-execution FIFO queue
    (tdev.messaging.queues.QUEUE_ROUTES: one message group per execution)."""

    # Set by the stack (and by the local runtime when it creates the queue); a publisher without it fails
    # its first task completion naming the variable (ConfigurationError), and the stream retries it.
    agent_execution_queue_url: str = Field(
        default="", pattern=r"^(https?://.+)?$", alias="AGENT_EXECUTION_QUEUE_URL"
    )


class WebSocketEnvironment(_Authenticates):
    """websocket: $connect authenticates like the authorizer (same variables); subscribe reads the
    execution and the caller's access like the API (the table and its key)."""


class PushProgressEnvironment(FunctionEnvironment):
    """push_progress: the table (progress log, subscriptions) and the WebSocket API's management endpoint
    (not in the VPC: no Redis)."""

    table_name: str = Field(min_length=3, alias="TABLE_NAME")
    # Set by the stack; a pusher without it fails its first send naming the variable (ConfigurationError),
    # and the stream retries the record.
    websocket_endpoint: str = Field(default="", pattern=r"^(https://.+)?$", alias="TDEV_WEBSOCKET_ENDPOINT")


class SecretRotationEnvironment(FunctionEnvironment):
    """rotate_secret: Secrets Manager invokes it with the secret; it needs nothing else."""


class AlertEnvironment(_OnTheTable):
    """alert_intake and alert_escalation: the escalation state machine, the channels' secret and topics."""

    # The escalation steps start nothing: only the intake gets the state machine's ARN.
    optional_in_stack: ClassVar[frozenset[str]] = frozenset({Var.REDIS_URL, Var.TDEV_ALERT_ESCALATION_ARN})
    alert_escalation_arn: str | None = Field(
        default=None, pattern=r"^arn:", alias="TDEV_ALERT_ESCALATION_ARN"
    )
    alert_secret_name: str | None = Field(default=None, min_length=1, alias="TDEV_ALERT_SECRET_NAME")
    alert_email_topic_arn: str | None = Field(
        default=None, pattern=r"^arn:", alias="TDEV_ALERT_EMAIL_TOPIC_ARN"
    )
    alert_sms_topic_arn: str | None = Field(default=None, pattern=r"^arn:", alias="TDEV_ALERT_SMS_TOPIC_ARN")


def provider_secrets() -> dict[str, str]:
    """TDEV_PROVIDER_SECRETS alone (model calls read it without the rest of their function's contract)."""
    raw = os.environ.get(Var.TDEV_PROVIDER_SECRETS) or "{}"
    try:
        secrets = json.loads(raw)
        if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
            raise TypeError("not an object of secret names")
        return {str(k): v for k, v in secrets.items()}
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid environment variable: {Var.TDEV_PROVIDER_SECRETS}") from exc
