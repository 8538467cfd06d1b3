"""The typed contract between the CDK stacks and the code: environment variables, validated once."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field, ValidationError, create_model

from tdev.errors import ConfigurationError

OFFLINE_MODEL = "offline:tdev-offline-1"


class Settings(BaseModel):
    table_name: str = Field(min_length=3, alias="TABLE_NAME")
    state_machine_arn: str | None = Field(default=None, alias="STATE_MACHINE_ARN")
    default_model: str = Field(default=OFFLINE_MODEL, alias="TDEV_DEFAULT_MODEL")
    environment: str = Field(default="local", alias="TDEV_ENV")
    execution_retention_days: int = Field(default=90, ge=1, alias="TDEV_EXECUTION_RETENTION_DAYS")
    kms_key_id: str | None = Field(default=None, alias="KMS_KEY_ID")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    # Write-behind (tdev.write_behind): the SQS queue that receives records that failed every retry.
    write_behind_dlq_url: str | None = Field(default=None, alias="TDEV_WRITE_BEHIND_DLQ_URL")
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60, alias="TDEV_IDEMPOTENCY_TTL_SECONDS")
    # Security (tdev.security): token issuer, application rate limits ("<requests>/<seconds>"), body limit.
    jwt_issuer: str | None = Field(default=None, alias="TDEV_JWT_ISSUER")
    jwt_audience: str | None = Field(default=None, alias="TDEV_JWT_AUDIENCE")  # comma-separated audiences
    jwks_url: str | None = Field(default=None, alias="TDEV_JWKS_URL")  # https:// or file:// (local issuer)
    jwt_roles_claim: str = Field(default="cognito:groups", alias="TDEV_JWT_ROLES_CLAIM")
    # Cognito marks its tokens `token_use` = access | id: only access tokens are accepted. Empty: no check
    # (generic OIDC issuers whose tokens carry no such claim; their audience check still applies).
    jwt_token_use: str = Field(default="access", pattern=r"^(access|id|)$", alias="TDEV_JWT_TOKEN_USE")
    rate_limit_default: str = Field(default="100/900", pattern=r"^\d+/\d+$", alias="TDEV_RATE_LIMIT_DEFAULT")
    rate_limit_strict: str = Field(default="10/900", pattern=r"^\d+/\d+$", alias="TDEV_RATE_LIMIT_STRICT")
    # Failed authentications (bad tokens, unknown keys) per source IP and per API-key id before 429.
    auth_failure_limit_source: str = Field(
        default="100/600", pattern=r"^\d+/\d+$", alias="TDEV_AUTH_FAILURE_LIMIT_SOURCE"
    )
    auth_failure_limit_key: str = Field(
        default="10/600", pattern=r"^\d+/\d+$", alias="TDEV_AUTH_FAILURE_LIMIT_KEY"
    )
    rate_limit_api_key: str = Field(default="60/60", pattern=r"^\d+/\d+$", alias="TDEV_RATE_LIMIT_API_KEY")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1, alias="TDEV_MAX_BODY_BYTES")
    # API Gateway usage plans (tdev.security.usageplans): unset locally, where no gateway meters keys.
    usage_plan_name: str | None = Field(default=None, alias="TDEV_USAGE_PLAN_NAME")
    interactive_api_key_id: str | None = Field(default=None, alias="TDEV_INTERACTIVE_API_KEY_ID")
    # Sessions (tdev.sessions): encrypted checkpoints' bucket and the concurrency limits.
    checkpoint_bucket: str | None = Field(default=None, alias="CHECKPOINT_BUCKET")
    max_sessions_per_user: int = Field(default=5, ge=1, alias="TDEV_MAX_SESSIONS_PER_USER")
    max_sessions_global: int = Field(default=100, ge=1, alias="TDEV_MAX_SESSIONS_GLOBAL")
    # Workspaces (tdev.workspace) and the sandbox that runs their tests (tdev.sandbox).
    workspace_bucket: str | None = Field(default=None, alias="WORKSPACE_BUCKET")
    workspace_dir: str = Field(default=".tdev/workspaces", alias="TDEV_WORKSPACE_DIR")
    sandbox_function_name: str | None = Field(default=None, alias="SANDBOX_FUNCTION_NAME")
    # The WebSocket API's management endpoint (https://<api>.execute-api.<region>.amazonaws.com/<stage>).
    websocket_endpoint: str | None = Field(default=None, alias="TDEV_WEBSOCKET_ENDPOINT")
    # Budgets (tdev.data.budgets): a request without `budget_usd` gets this cap; every model call is held
    # to at most this many output tokens, which is also the output part of the worst case it reserves.
    default_budget_usd: float = Field(default=10.0, gt=0, le=1_000.0, alias="TDEV_DEFAULT_BUDGET_USD")
    max_output_tokens: int = Field(default=8_192, ge=16, le=200_000, alias="TDEV_MAX_OUTPUT_TOKENS")
    # Per user and per project, per calendar month (UTC): the caps every model call also reserves from, unless
    # an admin set another (PUT /v1/users/{id}/budget, PUT /v1/projects/{id}/budget). Tokens: no cap unless
    # set (they are always counted); the offline model is free, so only tokens would stop it.
    user_budget_usd: float = Field(default=100.0, gt=0, le=1_000_000.0, alias="TDEV_USER_BUDGET_USD")
    project_budget_usd: float = Field(default=1_000.0, gt=0, le=1_000_000.0, alias="TDEV_PROJECT_BUDGET_USD")
    user_budget_tokens: int | None = Field(default=None, gt=0, alias="TDEV_USER_BUDGET_TOKENS")
    project_budget_tokens: int | None = Field(default=None, gt=0, alias="TDEV_PROJECT_BUDGET_TOKENS")
    # The deployment's own model prices, JSON {"provider:model-id": [USD/1k in, USD/1k out]}: they win over
    # the catalogue's (tdev.llm.catalog.price_of).
    model_prices: str | None = Field(default=None, max_length=20_000, alias="TDEV_MODEL_PRICES")
    # Capacity (tdev.orchestration.capacity): runs in flight at once per model (per agent: its spec's
    # `max_concurrent`), and how long a slot's lease lasts: a run that crashed without releasing its slot
    # gives it back when the lease ends, so it must outlive the longest run (a Lambda lives at most 900 s).
    model_max_concurrent: int = Field(default=50, ge=1, le=10_000, alias="TDEV_MODEL_MAX_CONCURRENT")
    capacity_lease_seconds: int = Field(default=960, ge=1, le=3_600, alias="TDEV_CAPACITY_LEASE_SECONDS")
    # The agent pool of one container (tdev.agents.pool): agents of one kind kept and leased at once, how
    # long an idle one is kept, and whether the built-in agents are built at cold start.
    agent_pool_min_size: int = Field(default=0, ge=0, le=100, alias="TDEV_AGENT_POOL_MIN_SIZE")
    agent_pool_max_size: int = Field(default=10, ge=1, le=1_000, alias="TDEV_AGENT_POOL_MAX_SIZE")
    agent_pool_idle_timeout_seconds: float = Field(
        default=300.0, ge=0, le=86_400, alias="TDEV_AGENT_POOL_IDLE_TIMEOUT_SECONDS"
    )
    agent_pool_pre_warm: bool = Field(default=False, alias="TDEV_AGENT_POOL_PRE_WARM")
    # The load balancer's strategy among interchangeable agents (tdev.orchestration.routing.Strategy).
    routing_strategy: str = Field(
        default="weighted_round_robin",
        pattern=r"^(weighted_round_robin|least_connections|resource_based)$",
        alias="TDEV_ROUTING_STRATEGY",
    )
    # How often a running function re-reads Parameter Store (tdev.config.live): 60 s deployed, less in tests.
    config_poll_seconds: int = Field(default=60, ge=0, le=3_600, alias="TDEV_CONFIG_POLL_SECONDS")
    # The feature flags' AppConfig store (tdev.config.flag_store): application, environment and profile ids;
    # the deployment strategy only where flags are changed (the API).
    flags_application_id: str | None = Field(default=None, alias="TDEV_FLAGS_APPLICATION_ID")
    flags_environment_id: str | None = Field(default=None, alias="TDEV_FLAGS_ENVIRONMENT_ID")
    flags_profile_id: str | None = Field(default=None, alias="TDEV_FLAGS_PROFILE_ID")
    flags_deployment_strategy_id: str | None = Field(default=None, alias="TDEV_FLAGS_DEPLOYMENT_STRATEGY_ID")
    # The platform's API signing secret (Secrets Manager name, tdev.secrets): signs the cursors the
    # API hands out. Unset (locally, unless configured): cursors are not signed.
    api_signing_secret: str | None = Field(default=None, min_length=1, alias="TDEV_API_SIGNING_SECRET")
    # Alerting (tdev.alerts): the escalation state machine, the channels' secret (JSON: webhook_url,
    # webhook_signing_key, slack_webhook_url, pagerduty_routing_key, pagerduty_url), the SNS topics, the
    # rules: severity -> channels (JSON), escalation levels after the first (JSON list of channel lists),
    # muted key patterns (comma-separated globs), maintenance windows (JSON [[start, end], ...] ISO UTC).
    alert_escalation_arn: str | None = Field(default=None, alias="TDEV_ALERT_ESCALATION_ARN")
    alert_secret_name: str | None = Field(default=None, alias="TDEV_ALERT_SECRET_NAME")
    alert_email_topic_arn: str | None = Field(default=None, alias="TDEV_ALERT_EMAIL_TOPIC_ARN")
    alert_sms_topic_arn: str | None = Field(default=None, alias="TDEV_ALERT_SMS_TOPIC_ARN")
    alert_routing: str = Field(
        default='{"critical": ["pagerduty", "webhook", "sms"], "high": ["webhook", "slack"], '
        '"medium": ["slack", "email"], "low": ["email"]}',
        max_length=4_000,
        alias="TDEV_ALERT_ROUTING",
    )
    alert_escalation_levels: str = Field(
        default='[["webhook", "pagerduty"], ["webhook", "pagerduty", "sms"]]',
        max_length=4_000,
        alias="TDEV_ALERT_ESCALATION_LEVELS",
    )
    alert_escalation_wait_seconds: int = Field(
        default=300, ge=0, le=86_400, alias="TDEV_ALERT_ESCALATION_WAIT"
    )
    alert_muted: str = Field(default="", max_length=4_000, alias="TDEV_ALERT_MUTED")
    alert_maintenance: str = Field(default="[]", max_length=4_000, alias="TDEV_ALERT_MAINTENANCE")
    alert_group_window_seconds: int = Field(default=3_600, ge=1, le=86_400, alias="TDEV_ALERT_GROUP_WINDOW")
    alert_http_timeout_seconds: float = Field(default=5.0, gt=0, le=30, alias="TDEV_ALERT_HTTP_TIMEOUT")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the environment once per container (cold start); a bad deployment fails loudly here."""
    try:
        return Settings.model_validate(dict(os.environ))
    except ValidationError as exc:
        names = ", ".join(str(err["loc"][0]) for err in exc.errors())
        raise ConfigurationError(f"invalid or missing environment variables: {names}") from exc


def configured_model_prices() -> str | None:
    """TDEV_MODEL_PRICES alone, without the rest of the settings: prices are read where no table is
    configured too (`tdev models`, the router's ranking, benchmarks)."""
    return os.environ.get(str(Settings.model_fields["model_prices"].alias)) or None


# The one field, with Settings' own alias, default and bounds.
_OutputCap = create_model("_OutputCap", max_output_tokens=(int, Settings.model_fields["max_output_tokens"]))


def configured_max_output_tokens() -> int:
    """TDEV_MAX_OUTPUT_TOKENS alone, validated as Settings validates it: every model call is capped, also
    where no table is configured (`tdev bench`, an agent run outside a deployment)."""
    name = str(Settings.model_fields["max_output_tokens"].alias)
    value = os.environ.get(name)  # this one variable: a copy of the whole environment per call cost ~50 us
    try:
        fields = _OutputCap.model_validate({} if value is None else {name: value}).model_dump()
        return int(fields["max_output_tokens"])
    except ValidationError as exc:
        raise ConfigurationError("invalid environment variable: TDEV_MAX_OUTPUT_TOKENS") from exc


# The agent pool's fields, with Settings' own aliases, defaults and bounds.
_POOL_FIELDS = (
    "agent_pool_min_size",
    "agent_pool_max_size",
    "agent_pool_idle_timeout_seconds",
    "agent_pool_pre_warm",
)
_AgentPool = create_model(  # type: ignore[call-overload]
    "_AgentPool",
    **{name: (Settings.model_fields[name].annotation, Settings.model_fields[name]) for name in _POOL_FIELDS},
)


def configured_agent_pool() -> dict[str, Any]:
    """TDEV_AGENT_POOL_* alone, validated as Settings validates them: agents run where no table is
    configured too (`tdev bench`, an agent run outside a deployment)."""
    aliases = [str(Settings.model_fields[name].alias) for name in _POOL_FIELDS]
    try:
        return dict(
            _AgentPool.model_validate({a: os.environ[a] for a in aliases if a in os.environ}).model_dump()
        )
    except ValidationError as exc:
        raise ConfigurationError("invalid environment variables: TDEV_AGENT_POOL_*") from exc
