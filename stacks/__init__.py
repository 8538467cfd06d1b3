"""Infrastructure: one stack per concern (data, orchestration, API); `app.py` wires them per environment."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Token, Validations
from constructs import IConstruct

NAG_PACK = "AwsSolutions"


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag AwsSolutions finding on `scope` (and everything below it), with the reason.

    `rule` is the finding as cdk-nag reports it, e.g. `AwsSolutions-IAM5[Resource::*]`. The id is qualified
    with the plugin namespace so CDK keeps it in the validation report as an acknowledged finding.
    """
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{NAG_PACK}::{rule}", reason=reason))


def as_nag_prints(scope: IConstruct, text: str) -> str:
    """`text` with `{partition}`, `{region}`, `{account}` filled the way cdk-nag prints them in finding ids.

    Unresolved pseudo parameters print as `<AWS::Region>`; with a concrete environment (`cdk deploy` with
    credentials) they are literals, so acknowledgments that name an ARN must be built with this.
    """
    stack = Stack.of(scope)
    values = {
        name: f"<AWS::{pseudo}>" if Token.is_unresolved(value) else value
        for name, pseudo, value in (
            ("partition", "Partition", stack.partition),
            ("region", "Region", stack.region),
            ("account", "AccountId", stack.account),
        )
    }
    return text.format(**values)
