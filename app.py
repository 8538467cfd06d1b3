#!/usr/bin/env python3
"""The CDK app: one set of stacks (data → cache → orchestration → security → API) for the environment
chosen by context.

    make deploy ENV=dev                # bootstrap when needed, then every stack (see the Makefile)
    npx cdk synth                      # dev, default model bedrock:amazon.nova-lite-v1:0
    npx cdk deploy --all -c env=prod -c defaultModel=bedrock:amazon.nova-pro-v1:0 -c providers=bedrock
    python app.py [-c key=value ...]   # synth only, no CDK CLI needed (node is)

Before any synth, `make layer` builds the third-party layers (functions/layers.py); `python app.py` prints
each function's unzipped size (code + its layers) and fails naming a function over Lambda's limit.

cdk-nag's AwsSolutions checks run on every synth; unacknowledged errors fail it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# jsii prints a banner on Node 20; silence it before aws_cdk (and so jsii) is imported.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

REPO_ROOT = Path(__file__).resolve().parent
CORE_LAYER_PATH = REPO_ROOT / "layers" / "core"
DEPENDENCIES_LAYER_PATH = REPO_ROOT / "build" / "layers" / "lambda"

# The data stack builds the table from tdev.data.schema (the layer's own package): make both importable.
for _path in (REPO_ROOT, CORE_LAYER_PATH / "python"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from functions.registry import (  # noqa: E402
    FUNCTIONS,
    PackageTooLarge,
    check_package_sizes,
    layers_of,
    package_sizes,
    parse_providers,
    size_table,
)
from stacks.alerting_stack import AlertingStack  # noqa: E402
from stacks.api_stack import ApiStack  # noqa: E402
from stacks.cache_stack import CacheAlarms, CacheStack  # noqa: E402
from stacks.dashboards import OperationsStack  # noqa: E402
from stacks.data_stack import DataStack  # noqa: E402
from stacks.messaging_stack import MessagingStack  # noqa: E402
from stacks.orchestration_stack import OrchestrationStack  # noqa: E402
from stacks.pipeline_stack import STAGES, PipelineSource, PipelineStack  # noqa: E402
from stacks.realtime_stack import RealtimeStack  # noqa: E402
from stacks.security_stack import SecurityStack  # noqa: E402
from stacks.sessions_stack import SessionsStack, serve_sessions  # noqa: E402
from stacks.settings import EnvironmentSettings, settings_for  # noqa: E402
from stacks.workspaces import serve_artifacts  # noqa: E402


@dataclass(frozen=True)
class TDeveloperStacks:
    data: DataStack
    cache: CacheStack
    orchestration: OrchestrationStack
    api: ApiStack
    security: SecurityStack
    sessions: SessionsStack
    messaging: MessagingStack
    operations: OperationsStack
    alerting: AlertingStack
    realtime: RealtimeStack

    @property
    def all(self) -> tuple[cdk.Stack, ...]:
        return (
            self.data,
            self.cache,
            self.orchestration,
            self.api,
            self.security,
            self.sessions,
            self.messaging,
            self.operations,
            self.alerting,
            self.realtime,
        )


def add_environment(
    scope: cdk.App,
    settings: EnvironmentSettings,
    *,
    dependencies_layer_path: Path | str,
    core_layer_path: Path | str = CORE_LAYER_PATH,
    env: cdk.Environment | None = None,
) -> TDeveloperStacks:
    """Add the stacks of one environment to `scope`, wired by constructor arguments."""
    common = {"env": env, "termination_protection": settings.deletion_protection}
    data = DataStack(
        scope,
        f"{settings.prefix}-data",
        settings=settings,
        description=f"T-Developer {settings.name}: table and key",
        **common,
    )
    cache = CacheStack(
        scope,
        f"{settings.prefix}-cache",
        settings=settings,
        key=data.key,
        description=f"T-Developer {settings.name}: VPC and shared Redis (ElastiCache Serverless)",
        **common,
    )
    orchestration = OrchestrationStack(
        scope,
        f"{settings.prefix}-orchestration",
        settings=settings,
        table=data.table,
        flags=data.flags,
        key=data.key,
        field_key=data.field_key,
        core_layer_path=str(core_layer_path),
        dependencies_layer_path=str(dependencies_layer_path),
        network=cache.network,
        description=f"T-Developer {settings.name}: request workflow, agents, event bus, alarms",
        **common,
    )
    # The cache's alarms live next to the alarm topic (the orchestration stack already depends on the cache).
    CacheAlarms(orchestration, "CacheAlarms", settings=settings, topic=orchestration.alarm_topic)
    security = SecurityStack(
        scope,
        f"{settings.prefix}-security",
        settings=settings,
        description=f"T-Developer {settings.name}: users (Cognito) and the token issuer",
        **common,
    )
    api = ApiStack(
        scope,
        f"{settings.prefix}-api",
        settings=settings,
        table=data.table,
        flags=data.flags,
        key=data.key,
        state_machine=orchestration.state_machine,
        alarm_topic=orchestration.alarm_topic,
        token_issuer=security.token_issuer,
        token_audience=security.token_audience,
        roles_claim=security.roles_claim,
        token_use=security.token_use,
        field_key=data.field_key,
        core_layer_path=str(core_layer_path),
        dependencies_layer_path=str(dependencies_layer_path),
        network=cache.network,
        api_signing_secret=data.platform_secrets.api_signing,
        description=f"T-Developer {settings.name}: REST API",
        **common,
    )
    sessions = SessionsStack(
        scope,
        f"{settings.prefix}-sessions",
        settings=settings,
        table=data.table,
        key=data.key,
        field_key=data.field_key,
        alarm_topic=orchestration.alarm_topic,
        core_layer_path=str(core_layer_path),
        dependencies_layer_path=str(dependencies_layer_path),
        network=cache.network,
        description=f"T-Developer {settings.name}: session checkpoints, sweeper, session alarms",
        **common,
    )
    serve_sessions(api.function, data.key, settings, field_key=data.field_key)
    serve_artifacts(api.function, data.key, settings)
    messaging = MessagingStack(
        scope,
        f"{settings.prefix}-messaging",
        settings=settings,
        table=data.table,
        table_key=data.key,
        event_bus=orchestration.event_bus,
        alarm_topic=orchestration.alarm_topic,
        core_layer_path=str(core_layer_path),
        dependencies_layer_path=str(dependencies_layer_path),
        description=f"T-Developer {settings.name}: outbox publisher, queues, consumers, routing rules",
        **common,
    )
    alerting = AlertingStack(
        scope,
        f"{settings.prefix}-alerting",
        settings=settings,
        table=data.table,
        key=data.key,
        event_bus=orchestration.event_bus,
        core_layer_path=str(core_layer_path),
        dependencies_layer_path=str(dependencies_layer_path),
        description=f"T-Developer {settings.name}: alert intake, channels, escalation",
        **common,
    )
    realtime = RealtimeStack(
        scope,
        f"{settings.prefix}-realtime",
        settings=settings,
        table=data.table,
        key=data.key,
        token_issuer=security.token_issuer,
        token_audience=security.token_audience,
        roles_claim=security.roles_claim,
        token_use=security.token_use,
        core_layer_path=str(core_layer_path),
        dependencies_layer_path=str(dependencies_layer_path),
        network=cache.network,
        description=f"T-Developer {settings.name}: WebSocket API for live progress, and its pusher",
        **common,
    )
    operations = OperationsStack(
        scope,
        f"{settings.prefix}-operations",
        settings=settings,
        stacks=(data, cache, orchestration, security, api, sessions, messaging, alerting, realtime),
        api_name=api.api.rest_api_name,
        state_machine=orchestration.state_machine,
        description=f"T-Developer {settings.name}: the operations dashboard",
        **common,
    )
    for stack in (
        data,
        cache,
        orchestration,
        security,
        api,
        sessions,
        messaging,
        operations,
        alerting,
        realtime,
    ):
        cdk.Tags.of(stack).add("project", "t-developer")
        cdk.Tags.of(stack).add("environment", settings.name)
    return TDeveloperStacks(
        data=data,
        cache=cache,
        orchestration=orchestration,
        api=api,
        security=security,
        sessions=sessions,
        messaging=messaging,
        operations=operations,
        alerting=alerting,
        realtime=realtime,
    )


def check_with_cdk_nag(app: cdk.App) -> None:
    """AwsSolutions checks on every stack; acknowledgments live next to the resources they concern."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def dependencies_layer_or_exit(
    path: Path = DEPENDENCIES_LAYER_PATH, providers: tuple[str, ...] = ("bedrock",)
) -> Path:
    """The folder of the built layers, when every layer the functions need is there."""
    needed = sorted({layer for name in FUNCTIONS for layer in layers_of(name, providers)})
    missing = [layer for layer in needed if not (path / layer / "python").is_dir()]
    if missing:
        shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
        sys.exit(
            f"The layers {', '.join(missing)} are missing from {shown}/.\n"
            f"Build them first with `make layer PROVIDERS={','.join(providers)}` (pip installs the runtime "
            "requirements for Lambda: arm64, Python 3.12), then synthesize again."
        )
    return path


def report_package_sizes(layers_dir: Path, providers: tuple[str, ...]) -> None:
    """Print every function's unzipped size; exit naming the functions over Lambda's limits."""
    sizes = package_sizes(layers_dir, providers)
    print(f"Unzipped size of each function (code + layers), providers {','.join(providers)}:")
    print(size_table(sizes))
    try:
        check_package_sizes(sizes)
    except PackageTooLarge as exc:
        sys.exit(f"Too large to deploy: {exc}")


def cdk_json_context() -> dict[str, object]:
    """The context of cdk.json (feature flags). The CDK CLI passes it itself; `python app.py` and the tests
    read it here so every synth path produces the same templates (CLI values still take precedence)."""
    return dict(json.loads((REPO_ROOT / "cdk.json").read_text()).get("context", {}))


def build_app(
    *,
    environment: str | None = None,
    default_model: str | None = None,
    dependencies_layer_path: Path | str | None = None,
    outdir: str | None = None,
    env: cdk.Environment | None = None,
    providers: str | None = None,
    context: dict[str, object] | None = None,
) -> tuple[cdk.App, TDeveloperStacks]:
    """The app with one environment's stacks and cdk-nag; context `env` / `defaultModel` unless given."""
    app = cdk.App(outdir=outdir, context={**cdk_json_context(), **(context or {})})
    settings = settings_for(
        environment or app.node.try_get_context("env") or "dev",
        default_model=default_model or app.node.try_get_context("defaultModel"),
        providers=parse_providers(providers or app.node.try_get_context("providers")),
    )
    stacks = add_environment(
        app,
        settings,
        dependencies_layer_path=dependencies_layer_path
        or dependencies_layer_or_exit(providers=settings.providers),
        env=env,
    )
    check_with_cdk_nag(app)
    return app, stacks


def build_pipeline_app(
    *,
    dependencies_layer_path: Path | str | None = None,
    outdir: str | None = None,
    env: cdk.Environment | None = None,
    context: dict[str, object] | None = None,
) -> tuple[cdk.App, PipelineStack]:
    """The delivery pipeline (stacks/pipeline_stack.py) instead of one environment: asked for with
    `-c pipeline=true`, its source from `-c connectionArn=... -c repository=owner/name [-c branch=main]`.
    Each stage holds the stacks `build_app` makes for that environment; cdk-nag checks them all."""
    app = cdk.App(outdir=outdir, context={**cdk_json_context(), **(context or {})})
    source = PipelineSource(
        connection_arn=str(app.node.try_get_context("connectionArn") or ""),
        repository=str(app.node.try_get_context("repository") or ""),
        branch=str(app.node.try_get_context("branch") or "main"),
    )
    default_model = app.node.try_get_context("defaultModel")
    settings = {
        name: settings_for(
            name,
            default_model=default_model,
            providers=parse_providers(app.node.try_get_context("providers")),
        )
        for name in STAGES
    }
    providers = settings["prod"].providers
    layers = dependencies_layer_path or dependencies_layer_or_exit(providers=providers)
    pipeline = PipelineStack(
        app,
        "tdev-pipeline",
        source=source,
        settings=settings,
        add_environment=lambda stage, environment: add_environment(
            stage, environment, dependencies_layer_path=layers
        ),
        providers=providers,
        stage_env=env,
        env=env,
        description="T-Developer: delivery pipeline (test, synth, dev, staging, approval, prod)",
    )
    cdk.Tags.of(pipeline).add("project", "t-developer")
    check_with_cdk_nag(app)
    return app, pipeline


def main() -> None:
    # Deploy to the account and region of the caller's credentials; never a hard-coded account.
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    # The CDK CLI chooses the output directory; `python app.py` alone writes to cdk.out like the CLI.
    outdir = None if os.environ.get("CDK_OUTDIR") else str(REPO_ROOT / "cdk.out")
    context = command_line_context(sys.argv[1:])
    if str(context.get("pipeline", "")).lower() == "true":
        pipeline_app, pipeline = build_pipeline_app(outdir=outdir, env=env, context=context)
        report_package_sizes(DEPENDENCIES_LAYER_PATH, pipeline.providers)
        pipeline_app.synth()
        return
    app, stacks = build_app(outdir=outdir, env=env, context=context)
    report_package_sizes(DEPENDENCIES_LAYER_PATH, stacks.orchestration.settings.providers)
    app.synth()


def command_line_context(args: list[str]) -> dict[str, object]:
    """`-c key=value` pairs, as the CDK CLI takes them (for `python app.py`; the CLI passes its own)."""
    context: dict[str, object] = {}
    for flag, pair in zip(args[::2], args[1::2], strict=False):
        if flag not in ("-c", "--context") or "=" not in pair:
            sys.exit(f"usage: python app.py [-c key=value ...] (got {flag} {pair})")
        key, value = pair.split("=", 1)
        context[key] = value
    return context


if __name__ == "__main__":
    main()
