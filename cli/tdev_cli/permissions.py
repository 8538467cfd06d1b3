"""Permissions from evidence: recorded AWS calls as IAM needs, checked against synthesized roles.

`needs(call)` turns one recorded call (`tdev_cli.aws_calls.AwsCall`) into the IAM actions and resources
AWS authorises it against: usually `<prefix>:<Operation>` on the resource the parameters name, with
AWS's exceptions (a DynamoDB transaction is authorised per item, Bedrock's Converse is InvokeModel, S3
lists are ListBucket on the bucket, API Gateway's management API is authorised by HTTP verb and path).

`RoleIndex` reads the function roles of synthesized CloudFormation templates (every stack, with
cross-stack exports followed) and `Policy.allows(need)` evaluates a need against one role's statements:
action and resource wildcards, Deny before Allow, and the condition operators the stacks use.
"""

from __future__ import annotations

import fnmatch
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tdev_cli.aws_calls import AwsCall

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's fixed emulated account, not a real one


@dataclass(frozen=True)
class Need:
    """One IAM authorisation a call needs: an action on a resource, with the request's condition keys."""

    action: str
    resource: str
    call: str  # what asked for it: service:Operation
    context: tuple[tuple[str, str], ...] = ()

    @property
    def keys(self) -> dict[str, str]:
        return dict(self.context)


# ------------------------------------------------------------------------------- calls -> IAM needs
# DynamoDB transactions and batches are authorised per item, as the single-item actions.
_TRANSACT_WRITE = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
# S3 operations whose IAM action has another name (all others: s3:<Operation>).
_S3_ACTIONS = {
    "HeadObject": "GetObject",
    "ListObjectsV2": "ListBucket",
    "ListObjects": "ListBucket",
    "HeadBucket": "ListBucket",
    "DeleteObjects": "DeleteObject",
    "GetObjectAttributes": "GetObject",
}
# Bedrock Runtime: the Converse API is authorised as the invoke actions.
_BEDROCK_ACTIONS = {"Converse": "InvokeModel", "ConverseStream": "InvokeModelWithResponseStream"}
# Calls that need no permission at all.
_UNAUTHORISED_OPERATIONS = {("sts", "GetCallerIdentity")}
_INFERENCE_PROFILE_PREFIXES = ("us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca.")


def needs(call: AwsCall, region: str = REGION, account: str = ACCOUNT) -> list[Need]:
    """The IAM needs of one recorded call."""
    service, op, params = call.service, call.operation, call.params or {}
    label = f"{service}:{op}"
    if (service, op) in _UNAUTHORISED_OPERATIONS:
        return []

    def need(action: str, resource: str, **context: str) -> Need:
        return Need(action, resource, label, tuple(sorted(context.items())))

    if service == "dynamodb":
        return _dynamodb_needs(op, params, label, region, account)
    if service == "kms":
        return [need(f"kms:{op}", _kms_arn(str(params.get("KeyId", "*")), region, account))]
    if service == "stepfunctions":
        resource = params.get("stateMachineArn") or params.get("executionArn") or "*"
        return [need(f"states:{op}", str(resource))]
    if service == "events" and op == "PutEvents":
        buses = {str(e.get("EventBusName") or "default") for e in params.get("Entries", [])} or {"default"}
        return [need("events:PutEvents", _bus_arn(b, region, account)) for b in sorted(buses)]
    if service == "sqs":
        if op == "GetQueueUrl":
            owner = str(params.get("QueueOwnerAWSAccountId") or account)
            return [need("sqs:GetQueueUrl", f"arn:aws:sqs:{region}:{owner}:{params.get('QueueName')}")]
        url = str(params.get("QueueUrl", ""))
        owner, name = url.rstrip("/").split("/")[-2:] if url.count("/") >= 4 else (account, url)
        return [need(f"sqs:{op}", f"arn:aws:sqs:{region}:{owner}:{name}")]
    if service == "s3":
        bucket, key = str(params.get("Bucket", "*")), params.get("Key")
        action = f"s3:{_S3_ACTIONS.get(op, op)}"
        if op == "DeleteObjects":
            objects = params.get("Delete", {}).get("Objects", [])
            return [need(action, f"arn:aws:s3:::{bucket}/{o.get('Key')}") for o in objects]
        if op == "CopyObject":  # authorised as reading the source and writing the destination
            source = params.get("CopySource", {})
            if isinstance(source, str):
                source_arn = f"arn:aws:s3:::{source.lstrip('/').split('?', 1)[0]}"
            else:
                source_arn = f"arn:aws:s3:::{source.get('Bucket')}/{source.get('Key')}"
            return [need("s3:GetObject", source_arn), need("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}")]
        if action == "s3:ListBucket":
            return [need(action, f"arn:aws:s3:::{bucket}", **{"s3:prefix": str(params.get("Prefix", ""))})]
        return [need(action, f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else ""))]
    if service == "lambda" and op in ("Invoke", "InvokeAsync", "InvokeWithResponseStream"):
        # The invoke APIs are authorised as lambda:InvokeFunction on the function.
        function = str(params.get("FunctionName", "*"))
        if not function.startswith("arn:"):
            function = f"arn:aws:lambda:{region}:{account}:function:{function}"
        action = "InvokeFunction" if op != "InvokeWithResponseStream" else op
        return [need(f"lambda:{action}", function.split(":$")[0])]
    if service == "bedrock-runtime":
        model = str(params.get("modelId", "*"))
        return [need(f"bedrock:{_BEDROCK_ACTIONS.get(op, op)}", _bedrock_arn(model, region, account))]
    if service == "ssm":  # Parameter Store: authorised on the parameter, or on the path for a path read

        def parameter(name: str) -> str:
            return f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"

        if op == "GetParametersByPath":
            return [need("ssm:GetParametersByPath", parameter(str(params.get("Path", ""))).rstrip("/"))]
        if op == "DeleteParameters":
            return [need("ssm:DeleteParameters", parameter(str(n))) for n in params.get("Names", [])]
        return [need(f"ssm:{op}", parameter(str(params.get("Name", "*"))))]
    if service == "secretsmanager":  # authorised on the secret's ARN, whose name ends in six random chars
        secret = str(params.get("SecretId", "*"))
        if not secret.startswith("arn:"):
            secret = f"arn:aws:secretsmanager:{region}:{account}:secret:{secret}-AbCdEf"
        return [need(f"secretsmanager:{op}", secret)]
    if service == "sns" and op == "Publish":  # authorised on the topic (a phone number: on no topic, "*")
        return [need("sns:Publish", str(params.get("TopicArn") or params.get("TargetArn") or "*"))]
    if service in ("appconfig", "appconfigdata"):
        return _appconfig_needs(call, need, region, account)
    if service == "apigateway":
        # The management API is authorised by HTTP verb on the resource path.
        context: dict[str, str] = {}
        for tag, value in (params.get("tags") or {}).items():
            context[f"aws:RequestTag/{tag}"] = str(value)
        for tag, value in ((call.context or {}).get("resource_tags") or {}).items():
            context[f"aws:ResourceTag/{tag}"] = str(value)
        return [
            need(
                f"apigateway:{call.http_method}",
                f"arn:aws:apigateway:{region}::{call.request_path}",
                **context,
            )
        ]
    if service == "apigatewaymanagementapi":
        # WebSocket connections: execute-api:ManageConnections on <api>/<stage>/<verb>/@connections/<id>.
        endpoint = urllib.parse.urlsplit(str((call.context or {}).get("endpoint") or ""))
        api, stage = (endpoint.hostname or "*").split(".", 1)[0], endpoint.path.strip("/") or "*"
        return [
            need(
                "execute-api:ManageConnections",
                f"arn:aws:execute-api:{region}:{account}:{api}/{stage}/{call.http_method}{call.request_path}",
            )
        ]
    return [need(f"{call.iam_prefix}:{op}", "*")]


def _appconfig_needs(call: AwsCall, need: Any, region: str, account: str) -> list[Need]:
    """AppConfig is authorised on the application's sub-resources: the data plane on the environment's
    configuration of a profile, a new hosted version on the profile, a deployment on the environment,
    the profile and the strategy."""
    op, params = call.operation, call.params or {}
    root = f"arn:aws:appconfig:{region}:{account}:"
    parts: tuple[Any, ...] = ()
    if op == "StartConfigurationSession":
        parts = (
            params.get("ApplicationIdentifier"),
            params.get("EnvironmentIdentifier"),
            params.get("ConfigurationProfileIdentifier"),
        )
    elif op == "GetLatestConfiguration":
        parts = tuple((call.context or {}).get("configuration") or ("*", "*", "*"))
    if parts:
        application, environment, profile = parts
        configuration = f"application/{application}/environment/{environment}/configuration/{profile}"
        return [need(f"appconfig:{op}", root + configuration)]
    application = params.get("ApplicationId", "*")
    profile = f"{root}application/{application}/configurationprofile/{params.get('ConfigurationProfileId')}"
    if op == "CreateHostedConfigurationVersion":
        return [need("appconfig:CreateHostedConfigurationVersion", profile)]
    if op == "StartDeployment":
        return [
            need("appconfig:StartDeployment", resource)
            for resource in (
                f"{root}application/{application}/environment/{params.get('EnvironmentId')}",
                profile,
                f"{root}deploymentstrategy/{params.get('DeploymentStrategyId')}",
            )
        ]
    return [need(f"appconfig:{op}", "*")]


def _dynamodb_needs(op: str, params: Mapping[str, Any], label: str, region: str, account: str) -> list[Need]:
    def table(name: str, index: str | None = None) -> str:
        arn = name if name.startswith("arn:") else f"arn:aws:dynamodb:{region}:{account}:table/{name}"
        return f"{arn}/index/{index}" if index else arn

    if op == "TransactWriteItems":
        found = []
        for item in params.get("TransactItems", []):
            for kind, body in item.items():
                found.append(Need(f"dynamodb:{_TRANSACT_WRITE[kind]}", table(body["TableName"]), label))
        return found
    if op == "TransactGetItems":
        return [
            Need("dynamodb:GetItem", table(i["Get"]["TableName"]), label)
            for i in params.get("TransactItems", [])
        ]
    if op in ("BatchGetItem", "BatchWriteItem"):
        return [Need(f"dynamodb:{op}", table(name), label) for name in params.get("RequestItems", {})]
    if "TableName" in params:
        return [Need(f"dynamodb:{op}", table(str(params["TableName"]), params.get("IndexName")), label)]
    return [Need(f"dynamodb:{op}", "*", label)]


def _kms_arn(key: str, region: str, account: str) -> str:
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        return f"arn:aws:kms:{region}:{account}:{key}"
    return f"arn:aws:kms:{region}:{account}:key/{key}"


def _bus_arn(bus: str, region: str, account: str) -> str:
    return bus if bus.startswith("arn:") else f"arn:aws:events:{region}:{account}:event-bus/{bus}"


def _bedrock_arn(model: str, region: str, account: str) -> str:
    if model.startswith("arn:"):
        return model
    if model.startswith(_INFERENCE_PROFILE_PREFIXES):
        return f"arn:aws:bedrock:{region}:{account}:inference-profile/{model}"
    return f"arn:aws:bedrock:{region}::foundation-model/{model}"


# ------------------------------------------------------------------------------ policy evaluation
def _like(pattern: str, value: str) -> bool:
    """IAM's wildcard match (`*` any run, `?` one character), case-sensitive as for resources."""
    return fnmatch.fnmatchcase(value, pattern)


def action_matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sid: str = ""

    def covers(self, need: Need) -> bool:
        return (
            any(action_matches(a, need.action) for a in self.actions)
            and any(_like(r, need.resource) for r in self.resources)
            and _conditions_hold(self.conditions, need.keys)
        )


_OPERATORS = {
    "StringEquals": lambda expected, actual: actual == expected,
    "StringLike": lambda expected, actual: _like(expected, actual),
    "ArnEquals": lambda expected, actual: actual == expected,
    "ArnLike": lambda expected, actual: _like(expected, actual),
}


def _conditions_hold(conditions: Mapping[str, Mapping[str, Any]], keys: Mapping[str, str]) -> bool:
    """Every condition must hold; a key the request does not carry fails it (unless ...IfExists)."""
    for operator, tests in conditions.items():
        if_exists = operator.endswith("IfExists")
        base = operator.removesuffix("IfExists")
        if base not in _OPERATORS:
            return False  # an operator this evaluator does not know: never assume it holds
        for key, expected in tests.items():
            values = expected if isinstance(expected, list) else [expected]
            if key not in keys:
                if not if_exists:
                    return False
                continue
            if not any(_OPERATORS[base](str(v), keys[key]) for v in values):
                return False
    return True


@dataclass
class Policy:
    """One function's role: its statements and the AWS managed policies attached to it."""

    function: str
    statements: list[Statement]
    managed_policies: list[str]

    def allows(self, need: Need) -> bool:
        denied = any(s.effect == "Deny" and s.covers(need) for s in self.statements)
        return not denied and any(s.effect == "Allow" and s.covers(need) for s in self.statements)

    def grants(self) -> Iterable[tuple[Statement, str]]:
        """(statement, action pattern) for every allowed action."""
        for statement in self.statements:
            if statement.effect == "Allow":
                for action in statement.actions:
                    yield statement, action


# ------------------------------------------------------------------------- synthesized templates
class RoleIndex:
    """The roles of every Lambda function in a set of templates, by function name.

    Intrinsic functions are resolved to concrete strings: pseudo parameters to `region`/`account`, a
    `Ref`/`Fn::GetAtt` to the resource's name or ARN (its name property, else its logical id), and
    `Fn::ImportValue` by following the export into the stack that declares it. `renames` then maps deployed
    names to the local runtime's (bound through the environment variables both give the code)."""

    def __init__(
        self, templates: Mapping[str, Mapping[str, Any]], region: str = REGION, account: str = ACCOUNT
    ):
        self.templates = templates
        self.region = region
        self.account = account
        self.exports: dict[str, tuple[str, Any]] = {}
        for stack, template in templates.items():
            for output in template.get("Outputs", {}).values():
                export = output.get("Export", {}).get("Name")
                if isinstance(export, str):
                    self.exports[export] = (stack, output["Value"])

    # ---------------------------------------------------------------------------------- resolving
    def resolve(self, stack: str, value: Any) -> Any:
        if isinstance(value, str | int | float | bool) or value is None:
            return value
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(stack, v) for k, v in value.items()}
        ((function, argument),) = value.items()
        if function == "Ref":
            return self._ref(stack, argument)
        if function == "Fn::GetAtt":
            logical, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self._get_att(stack, logical, attribute)
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(str(self.resolve(stack, p)) for p in parts)
        if function == "Fn::Select":
            index, items = argument
            return self.resolve(stack, items)[int(self.resolve(stack, index))]
        if function == "Fn::Split":
            separator, text = argument
            return str(self.resolve(stack, text)).split(separator)
        if function == "Fn::GetStackOutput":  # cross-stack references (CDK's strong references)
            source = str(self.resolve(stack, argument["StackName"]))
            return self.resolve(source, self.templates[source]["Outputs"][argument["OutputName"]]["Value"])
        if function == "Fn::ImportValue":
            name = self.resolve(stack, argument)
            source, exported = self.exports[name]
            return self.resolve(source, exported)
        if function == "Fn::Sub":
            text = argument if isinstance(argument, str) else argument[0]
            names = {} if isinstance(argument, str) else argument[1]

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in names:
                    return str(self.resolve(stack, names[name]))
                if "." in name:
                    logical, attribute = name.split(".", 1)
                    return str(self._get_att(stack, logical, attribute))
                return str(self._ref(stack, name))

            return re.sub(r"\$\{([^}!]+)\}", substitute, text)
        return {k: self.resolve(stack, v) for k, v in value.items()}

    def _resource(self, stack: str, logical: str) -> Mapping[str, Any]:
        return dict(self.templates[stack]["Resources"][logical])

    _NAME_PROPERTIES = (
        "TableName",
        "EventBusName",
        "QueueName",
        "BucketName",
        "FunctionName",
        "StateMachineName",
        "LogGroupName",
        "TopicName",
        "Name",
        "RoleName",
    )

    def _name(self, stack: str, logical: str) -> str:
        properties = self._resource(stack, logical).get("Properties", {})
        for prop in self._NAME_PROPERTIES:
            if prop in properties:
                return str(self.resolve(stack, properties[prop]))
        return logical

    def _ref(self, stack: str, name: str) -> str:
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack,
            "AWS::NoValue": "",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.templates[stack].get("Parameters", {}):
            return f"{{parameter:{name}}}"
        kind = self._resource(stack, name)["Type"]
        if kind.startswith("AWS::AppConfig::"):  # Ref: an id AppConfig generates, not the resource's name
            return name
        physical = self._name(stack, name)
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{physical}"
        if kind == "AWS::StepFunctions::StateMachine":
            return f"arn:aws:states:{self.region}:{self.account}:stateMachine:{physical}"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{self.region}:{self.account}:{physical}"
        if kind == "AWS::IAM::Role":
            return f"role/{stack}/{name}"
        if kind == "AWS::SecretsManager::Secret":  # Ref: the ARN (its name and six random characters)
            return f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{physical}-AbCdEf"
        if kind == "AWS::Lambda::Alias":  # the alias's ARN: its function's, qualified by the alias name
            alias = self.resolve(stack, self._resource(stack, name)["Properties"]["Name"])
            return f"arn:aws:lambda:{self.region}:{self.account}:function:{physical}:{alias}"
        return physical

    def _get_att(self, stack: str, logical: str, attribute: str) -> str:
        kind = self._resource(stack, logical)["Type"]
        name = self._name(stack, logical)
        r, a = self.region, self.account
        arns = {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{r}:{a}:table/{name}",
            "AWS::KMS::Key": f"arn:aws:kms:{r}:{a}:key/{name}",
            "AWS::Events::EventBus": f"arn:aws:events:{r}:{a}:event-bus/{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{r}:{a}:{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{r}:{a}:function:{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{r}:{a}:log-group:{name}:*",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::StepFunctions::StateMachine": f"arn:aws:states:{r}:{a}:stateMachine:{name}",
            "AWS::SNS::Topic": f"arn:aws:sns:{r}:{a}:{name}",
            "AWS::IAM::Role": f"role/{stack}/{logical}",
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        if kind == "AWS::DynamoDB::Table" and attribute == "StreamArn":
            return f"{arns[kind]}/stream/STREAM"
        if attribute in ("QueueName", "Name"):
            return name
        if kind == "AWS::KMS::Key" and attribute == "KeyId":
            return name
        return f"{{{logical}.{attribute}}}"

    # ----------------------------------------------------------------------------------- the roles
    def functions(self) -> dict[str, tuple[str, str, dict[str, Any]]]:
        """function name (POWERTOOLS_SERVICE_NAME) -> (stack, role id, resolved environment)."""
        found: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for stack, template in self.templates.items():
            for resource in template.get("Resources", {}).values():
                if resource.get("Type") != "AWS::Lambda::Function":
                    continue
                properties = resource.get("Properties", {})
                environment = properties.get("Environment", {}).get("Variables", {})
                name = environment.get("POWERTOOLS_SERVICE_NAME")
                if isinstance(name, str):
                    env = {k: self.resolve(stack, v) for k, v in environment.items()}
                    found[name] = (stack, str(self.resolve(stack, properties["Role"])), env)
        return found

    def policy(self, function: str, renames: Mapping[str, str] | None = None) -> Policy:
        _, role, _ = self.functions()[function]
        statements: list[Statement] = []
        managed: list[str] = []
        for source, template in self.templates.items():
            for logical, resource in template.get("Resources", {}).items():
                properties = resource.get("Properties", {})
                if resource.get("Type") == "AWS::IAM::Policy":
                    roles = [self.resolve(source, r) for r in properties.get("Roles", [])]
                    if role in roles:
                        statements += self._statements(source, properties["PolicyDocument"], renames)
                elif resource.get("Type") == "AWS::IAM::Role" and f"role/{source}/{logical}" == role:
                    for inline in properties.get("Policies", []):
                        statements += self._statements(source, inline["PolicyDocument"], renames)
                    managed += [str(self.resolve(source, m)) for m in properties.get("ManagedPolicyArns", [])]
        return Policy(function, statements, managed)

    def _statements(
        self, stack: str, document: Mapping[str, Any], renames: Mapping[str, str] | None
    ) -> list[Statement]:
        found = []
        for raw in document.get("Statement", []):
            statement = self.resolve(stack, raw)
            actions = statement.get("Action", [])
            resources = statement.get("Resource", [])
            found.append(
                Statement(
                    effect=statement.get("Effect", "Allow"),
                    actions=tuple(actions if isinstance(actions, list) else [actions]),
                    resources=tuple(
                        rename(str(r), renames or {})
                        for r in (resources if isinstance(resources, list) else [resources])
                    ),
                    conditions={
                        operator: {
                            key: [rename(str(v), renames or {}) for v in values]
                            if isinstance(values, list)
                            else rename(str(values), renames or {})
                            for key, values in tests.items()
                        }
                        for operator, tests in statement.get("Condition", {}).items()
                    },
                    sid=str(statement.get("Sid", "")),
                )
            )
        return found


def rename(value: str, renames: Mapping[str, str]) -> str:
    """Replace whole name segments (between `:` or `/` separators) of a deployed ARN by local names."""
    parts = re.split(r"([:/])", value)
    return "".join(renames.get(part, part) for part in parts)
