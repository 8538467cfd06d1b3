"""One way to build a Lambda function here: arm64, Python 3.12, X-Ray, JSON logs, layers, own log group."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aws_cdk import ArnFormat, Duration, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from functions.registry import FUNCTIONS, all_layers, layers_of, provider_secret_name, secret_providers
from stacks import acknowledge
from stacks.constructs.deployment import LiveAlias
from stacks.settings import EnvironmentSettings
from tdev.environment import Var
from tdev.version import __version__

if TYPE_CHECKING:
    from stacks.cache_stack import FunctionNetwork

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = REPO_ROOT / "functions"

# The layers are built for exactly this runtime and architecture (functions/layers.py: pip --platform
# manylinux_2_28_aarch64 ... --python-version 3.12); change them together.
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
HANDLER = "handler.lambda_handler"
ASSET_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.mypy_cache"]


class TdevLayers(Construct):
    """The layers of one stack: `core` (our `tdev` package) and the third-party layers its functions import.

    `dependencies_path` is the folder `make layer` builds (build/layers/lambda), one subfolder per layer of
    functions/registry.py. A layer version is created the first time a function of the stack needs it.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, core_path: str, dependencies_path: str
    ) -> None:
        super().__init__(scope, construct_id)
        self._dependencies_path = Path(dependencies_path)
        self._versions: dict[str, lambda_.LayerVersion] = {}
        self.core = lambda_.LayerVersion(
            self,
            "Core",
            code=lambda_.Code.from_asset(core_path, exclude=ASSET_EXCLUDES),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="T-Developer domain package (tdev)",
        )

    def layer(self, name: str, providers: Sequence[str]) -> lambda_.LayerVersion:
        if name not in self._versions:
            spec = all_layers(providers)[name]
            self._versions[name] = lambda_.LayerVersion(
                self,
                "".join(part.title() for part in name.split("_")),
                code=lambda_.Code.from_asset(str(self._dependencies_path / name), exclude=ASSET_EXCLUDES),
                compatible_runtimes=[RUNTIME],
                compatible_architectures=[ARCHITECTURE],
                description=f"Third-party packages: {spec.description}",
            )
        return self._versions[name]

    def for_function(self, name: str, providers: Sequence[str]) -> list[lambda_.ILayerVersion]:
        """Exactly the layers `name` imports (functions/registry.py), base first, our core last."""
        return [*(self.layer(layer, providers) for layer in layers_of(name, providers)), self.core]


class TdevFunction(Construct):
    """A handler folder `functions/<name>/` as a Lambda function; `.function` is the function itself and
    `.alias` its `live` alias, the one thing callers invoke (stacks/constructs/deployment.py: CodeDeploy
    shifts it to each new version and rolls it back on the function's alarms; `.deployment` holds those).

    The role is created here, without the AWSLambdaBasicExecutionRole managed policy: it may only write to
    the function's own (encrypted, retained-for-N-days) log group. With a `network` the function runs in
    the cache's VPC (private subnets, the cache clients' security group) and gets REDIS_URL.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        settings: EnvironmentSettings,
        layers: TdevLayers,
        log_key: kms.IKey,
        environment: Mapping[str, str] | None = None,
        memory_mb: int | None = None,
        timeout: Duration | None = None,
        reserved_concurrency: int | None = None,
        description: str | None = None,
        network: FunctionNetwork | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        code_path = FUNCTIONS_DIR / name
        timeout = timeout or Duration.seconds(30)

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=settings.log_retention,
            encryption_key=log_key,
            removal_policy=settings.removal_policy,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"T-Developer {name} function ({settings.name})",
        )
        self.log_group.grant_write(self.role)

        self.function = lambda_.Function(
            self,
            "Function",
            description=description or f"T-Developer {name}",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(code_path), exclude=ASSET_EXCLUDES),
            layers=layers.for_function(name, settings.providers),
            role=self.role,
            memory_size=memory_mb or settings.lambda_memory_mb,
            timeout=timeout,
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=getattr(lambda_.ApplicationLogLevel, settings.log_level),
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            log_group=self.log_group,
            vpc=network.vpc if network else None,
            vpc_subnets=network.subnets if network else None,
            security_groups=[network.security_group] if network else None,
            environment={
                Var.POWERTOOLS_SERVICE_NAME: name,
                Var.POWERTOOLS_METRICS_NAMESPACE: "TDeveloper",
                Var.POWERTOOLS_LOG_LEVEL: settings.log_level,
                Var.AGNO_TELEMETRY: "false",
                Var.TDEV_ENV: settings.name,
                Var.TDEV_VERSION: __version__,
                **({Var.REDIS_URL: network.redis_url} if network else {}),
                **(environment or {}),
            },
        )

        Tags.of(self.function).add("Version", __version__)
        self.deployment = LiveAlias(
            self, "Live", function=self.function, name=name, timeout=timeout, settings=settings
        )
        self.alias = self.deployment.alias

        if FUNCTIONS[name].calls_models:
            self._read_provider_secrets(settings, log_key)

        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to python3.12 on purpose: the layers are built for it (functions/layers.py: pip "
            "--python-version 3.12 --platform manylinux_2_28_aarch64 ...); runtime and layers move together.",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Only the X-Ray statement that active tracing adds (xray:PutTraceSegments, "
            "xray:PutTelemetryRecords): these actions support no resource-level permissions.",
        )
        if network is not None:
            acknowledge(
                self.role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaVPCAccessExecutionRole]",
                "Added by CDK for functions in a VPC: ENI create/describe/delete, which Lambda needs to "
                "attach the function to its subnets; the AWS-managed policy tracks Lambda's requirements.",
            )

    def _read_provider_secrets(self, settings: EnvironmentSettings, key: kms.IKey) -> None:
        """The API keys of the enabled providers (secrets of the data stack, by their derived names)."""
        secrets = {p: provider_secret_name(settings.prefix, p) for p in secret_providers(settings.providers)}
        if not secrets:
            return
        self.function.add_environment(Var.TDEV_PROVIDER_SECRETS, json.dumps(secrets, sort_keys=True))
        stack = Stack.of(self)
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadProviderApiKeys",
                actions=["secretsmanager:GetSecretValue"],
                resources=[
                    # Secrets Manager appends six random characters to a secret's name in its ARN.
                    stack.format_arn(
                        service="secretsmanager",
                        resource="secret",
                        resource_name=f"{name}-??????",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                    for name in secrets.values()
                ],
            )
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="DecryptProviderApiKeys",
                actions=["kms:Decrypt"],
                resources=[key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"secretsmanager.{stack.region}.amazonaws.com"}
                },
            )
        )
