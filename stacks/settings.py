"""Per-environment values, in one place: `app.py` picks one and passes it to every stack."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs

DEFAULT_MODEL = "bedrock:amazon.nova-lite-v1:0"
DEFAULT_PROVIDERS = ("bedrock",)


@dataclass(frozen=True)
class EnvironmentSettings:
    """What differs between dev, staging and prod. Stacks read these; they never branch on the name.

    Logs are kept 30 days everywhere (SPEC 1.15); dev trades durability (no PITR, destroy on delete,
    no WAF) for cost and easy teardown.
    """

    name: str
    log_retention: logs.RetentionDays
    removal_policy: RemovalPolicy
    point_in_time_recovery: bool
    deletion_protection: bool
    default_model: str = DEFAULT_MODEL
    # The spend alarm (stacks/orchestration_stack.py): model calls on the default model costing more than
    # this in one hour notify the alarm topic (budgets cap each request; this watches all of them together).
    model_spend_alarm_usd_per_hour: float = 5.0
    # Model providers the deployment enables (-c providers=bedrock,openai): their SDKs are shipped (only to
    # functions that call models) and each API-key provider gets a Secrets Manager secret.
    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    log_level: str = "INFO"
    lambda_memory_mb: int = 512
    agent_memory_mb: int = 1024
    agent_timeout_seconds: int = 300
    # Reserving concurrency needs an account quota above it plus 100 (new accounts may have 10): opt in.
    agent_reserved_concurrency: int | None = None
    api_throttle_rate_limit: float = 50.0
    api_throttle_burst_limit: int = 100
    api_waf: bool = True
    # Step Functions logs include state input/output (request text, agent outputs) only where useful.
    workflow_log_execution_data: bool = False
    event_archive_retention_days: int = 30
    # The functions' VPC: one NAT gateway in dev/staging, one per AZ in prod (no single-AZ egress).
    nat_gateways: int = 1
    cache_max_storage_gb: int = 5
    cache_snapshot_retention_days: int = 1
    # Identity: a Cognito user pool by default; set oidc_issuer to use any OIDC issuer instead.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_roles_claim: str = "roles"
    # The `token_use` an OIDC issuer's API tokens carry ("" when it sets none; Cognito's is "access").
    oidc_token_use: str = ""
    require_mfa: bool = True
    # Browser origins allowed by CORS (none: the API is for CLIs and services unless listed).
    cors_origins: tuple[str, ...] = ()
    # API Gateway usage plan for machine clients (each API key): 1 request/s on average (the spec's 60 per
    # minute), bursts of 10, and requests per day. Interactive users share the stage's limits in theirs.
    usage_plan_rate_limit: float = 1.0
    usage_plan_burst_limit: int = 10
    usage_plan_daily_quota: int = 10_000
    # How a function's new version takes its `live` alias's traffic (CodeDeploy, stacks/constructs/
    # deployment.py): `traffic_shift_percent` more every `traffic_shift_minutes` (10 % every 5 minutes: 10,
    # 20, ... 100 over 45 minutes, never ahead of the spec's 10 % -> 50 % -> 100 % at 5-minute steps), rolled
    # back when one of the function's alarms fires; None shifts all at once (alarms still roll back).
    traffic_shift_percent: int | None = 10
    traffic_shift_minutes: int = 5

    @property
    def prefix(self) -> str:
        """Prefix for the few names that must be unique per account and region."""
        return f"tdev-{self.name}"


ENVIRONMENTS: dict[str, EnvironmentSettings] = {
    "dev": EnvironmentSettings(
        name="dev",
        log_retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=RemovalPolicy.DESTROY,
        point_in_time_recovery=False,
        deletion_protection=False,
        log_level="DEBUG",
        api_throttle_rate_limit=10.0,
        api_throttle_burst_limit=20,
        api_waf=False,
        require_mfa=False,
        workflow_log_execution_data=True,
        event_archive_retention_days=7,
        traffic_shift_percent=None,
    ),
    "staging": EnvironmentSettings(
        name="staging",
        log_retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=RemovalPolicy.RETAIN,
        point_in_time_recovery=True,
        deletion_protection=False,
        api_throttle_rate_limit=25.0,
        api_throttle_burst_limit=50,
    ),
    "prod": EnvironmentSettings(
        name="prod",
        log_retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=RemovalPolicy.RETAIN,
        point_in_time_recovery=True,
        deletion_protection=True,
        lambda_memory_mb=1024,
        agent_memory_mb=2048,
        api_throttle_rate_limit=100.0,
        api_throttle_burst_limit=200,
        event_archive_retention_days=90,
        nat_gateways=2,
        cache_snapshot_retention_days=7,
    ),
}


def settings_for(
    environment: str, *, default_model: str | None = None, providers: Sequence[str] | None = None
) -> EnvironmentSettings:
    """The settings of one environment, with the context overrides `app.py` accepts."""
    try:
        settings = ENVIRONMENTS[environment]
    except KeyError:
        known = ", ".join(sorted(ENVIRONMENTS))
        raise ValueError(f"unknown environment {environment!r} (-c env=...): choose one of {known}") from None
    if default_model:
        settings = replace(settings, default_model=default_model)
    if providers:
        settings = replace(settings, providers=tuple(providers))
    provider = settings.default_model.split(":", 1)[0]
    if provider != "offline" and provider not in settings.providers:
        raise ValueError(
            f"the default model {settings.default_model!r} needs provider {provider!r}, which is not enabled "
            f"(-c providers={','.join((*settings.providers, provider))})"
        )
    return settings
