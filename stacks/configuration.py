"""Run-time configuration (tdev.config): the feature flags' AppConfig store, and who may read or change the
flags and the parameters under `/t-developer/<env>/...`.

`FlagStore` is the flags' one home: an AppConfig application, an environment, a hosted freeform profile whose
JSON Schema validator AppConfig applies to every new version, and a deployment strategy; its first version
(every product flag's declared default, tdev.config.flags.PRODUCT_FLAGS) is deployed with the stack, from
the same definitions the local runtime uses (tdev.config.flag_store). Configuration keys have no parameter
until an operator sets one: until then the defaults and the stacks' environment variables apply.
Which functions read and which change flags and parameters is `stacks.permissions.FLAG_ACTIONS` and
`PARAMETER_ACTIONS` (from recorded calls, checked by tests/infrastructure/test_permissions_from_evidence.py).
"""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_appconfig as appconfig
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks import acknowledge, as_nag_prints
from stacks.permissions import FLAG_ACTIONS, FLAG_READS, FLAG_WRITES, PARAMETER_ACTIONS
from stacks.settings import EnvironmentSettings
from tdev.config import flag_store
from tdev.config.parameters import prefix
from tdev.environment import Var


class FlagStore(Construct):
    """`.application`, `.environment`, `.profile` (the hosted configuration), `.strategy`; `grant` gives a
    function its variables and the AppConfig actions FLAG_ACTIONS lists for it, on this store only."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings) -> None:
        super().__init__(scope, construct_id)
        self.application = appconfig.Application(
            self,
            "Application",
            application_name=flag_store.application_name(settings.prefix),
            description=f"T-Developer {settings.name}: feature flags (tdev flags ..., /v1/flags)",
        )
        self.environment = appconfig.Environment(
            self, "Environment", application=self.application, environment_name=settings.name
        )
        strategy = flag_store.DEPLOYMENT_STRATEGY
        self.strategy = appconfig.DeploymentStrategy(
            self,
            "AtOnce",
            deployment_strategy_name=f"{settings.prefix}-flags-at-once",
            description="A flag change reaches every poller at once (audited; undone by a rollback)",
            rollout_strategy=appconfig.RolloutStrategy.linear(
                growth_factor=strategy["GrowthFactor"],
                deployment_duration=Duration.minutes(int(strategy["DeploymentDurationInMinutes"])),
                final_bake_time=Duration.minutes(int(strategy["FinalBakeTimeInMinutes"])),
            ),
        )
        self.profile = appconfig.HostedConfiguration(
            self,
            "Flags",
            application=self.application,
            name=flag_store.PROFILE_NAME,
            description="Every stored flag: {name: FlagSpec document} (tdev.config.flags)",
            type=appconfig.ConfigurationType.FREEFORM,
            content=appconfig.ConfigurationContent.from_inline_json(
                flag_store.initial_document(), flag_store.CONTENT_TYPE
            ),
            validators=[appconfig.JsonSchemaValidator.from_inline(json.dumps(flag_store.validator_schema()))],
            deployment_strategy=self.strategy,
            deploy_to=[self.environment],
        )

    def _arn(self, resource: str) -> str:
        return Stack.of(self).format_arn(
            service="appconfig", resource=resource, arn_format=ArnFormat.NO_RESOURCE_NAME
        )

    def grant(self, function: lambda_.Function, name: str) -> None:
        actions = FLAG_ACTIONS.get(name, ())
        if not actions:
            return
        application, environment = self.application.application_id, self.environment.environment_id
        profile = self.profile.configuration_profile_id
        function.add_environment(Var.TDEV_FLAGS_APPLICATION_ID, application)
        function.add_environment(Var.TDEV_FLAGS_ENVIRONMENT_ID, environment)
        function.add_environment(Var.TDEV_FLAGS_PROFILE_ID, profile)
        reads = [a for a in actions if a in FLAG_READS]
        if reads:
            configuration = self._arn(
                f"application/{application}/environment/{environment}/configuration/{profile}"
            )
            function.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(sid="ReadFlags", actions=sorted(reads), resources=[configuration])
            )
        writes = [a for a in actions if a in FLAG_WRITES]
        if writes:
            function.add_environment(
                Var.TDEV_FLAGS_DEPLOYMENT_STRATEGY_ID, self.strategy.deployment_strategy_id
            )
            profile_arn = self._arn(f"application/{application}/configurationprofile/{profile}")
            statements = {
                "appconfig:CreateHostedConfigurationVersion": [profile_arn],
                # StartDeployment is authorised on the environment, the profile and the strategy.
                "appconfig:StartDeployment": [
                    self._arn(f"application/{application}/environment/{environment}"),
                    profile_arn,
                    self._arn(f"deploymentstrategy/{self.strategy.deployment_strategy_id}"),
                ],
            }
            for action in writes:
                function.grant_principal.add_to_principal_policy(
                    iam.PolicyStatement(
                        sid=action.split(":")[1], actions=[action], resources=statements[action]
                    )
                )


def grant_configuration(function: lambda_.IFunction, settings: EnvironmentSettings, name: str) -> None:
    """What `name` does with the environment's parameters: reads the path, and (the API) writes under it."""
    actions = PARAMETER_ACTIONS.get(name, ())
    if not actions:
        return
    root = Stack.of(function).format_arn(
        service="ssm", resource="parameter", resource_name=prefix(settings.name).lstrip("/")
    )
    reads = [a for a in actions if a == "ssm:GetParametersByPath"]
    writes = [a for a in actions if a != "ssm:GetParametersByPath"]
    if reads:
        function.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(sid="ReadConfiguration", actions=reads, resources=[root])
        )
    if writes:
        function.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(sid="ChangeConfiguration", actions=writes, resources=[f"{root}/*"])
        )
        finding = as_nag_prints(
            function,
            f"AwsSolutions-IAM5[Resource::arn:{{partition}}:ssm:{{region}}:{{account}}:parameter{prefix(settings.name)}/*]",
        )
        acknowledge(
            function.role or function,  # type: ignore[arg-type]
            finding,
            "Admins add configuration keys by name at run time (PUT /v1/config/<key>, validated and "
            "audited by tdev.config.service): the API writes only under this "
            "environment's own /t-developer/<env>/ path, whose names are not known at deploy time.",
        )
