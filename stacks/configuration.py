"""Run-time configuration in Parameter Store (tdev.config): the product flags' documents, and who may read
or change `/t-developer/<env>/...`.

The stack creates one parameter per product flag (tdev.config.flags.PRODUCT_FLAGS, the same function the
local runtime uses), so operators find every flag where the functions read it. Configuration keys have no
parameter until an operator sets one: until then the defaults and the stacks' environment variables apply.
Which functions read and which change the parameters is `stacks.permissions.PARAMETER_ACTIONS` (from
recorded calls, checked by tests/infrastructure/test_permissions_from_evidence.py).
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from stacks import acknowledge, as_nag_prints
from stacks.permissions import PARAMETER_ACTIONS
from stacks.settings import EnvironmentSettings
from tdev.config.flags import product_flag_parameters
from tdev.config.parameters import prefix


class FlagParameters(Construct):
    """`.parameters`: name -> the flag's StringParameter, holding its declared default document."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings) -> None:
        super().__init__(scope, construct_id)
        self.parameters: dict[str, ssm.StringParameter] = {}
        for name, document in product_flag_parameters(settings.name).items():
            flag = name.rsplit("/", 1)[-1]
            self.parameters[flag] = ssm.StringParameter(
                self,
                "".join(part.title() for part in flag.split("_")),
                parameter_name=name,
                string_value=document,
                description=f"T-Developer {settings.name}: feature flag {flag} (tdev flags set {flag} ...)",
                tier=ssm.ParameterTier.STANDARD,
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
            "Admins add configuration keys and flags by name at run time (PUT /v1/config/<key>, /v1/flags/"
            "<name>, validated and audited by tdev.config.service): the API writes only under this "
            "environment's own /t-developer/<env>/ path, whose names are not known at deploy time.",
        )
