"""The infrastructure as synthesized: what each stack promises, cdk-nag clean, cfn-lint clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aws_cdk.assertions import Match
from cfnlint.api import lint_file

import app as tdev_app
from functions.registry import layers_of
from stacks.api_stack import ROUTES
from stacks.constructs.deployment import ROLLBACK
from stacks.orchestration_stack import AGENT_FUNCTIONS
from stacks.settings import DEFAULT_MODEL, ENVIRONMENTS, settings_for
from statemachines.request_workflow import (
    DEFINITION_FILE,
    WORKFLOW_FUNCTIONS,
    WORKFLOW_TUNING,
    function_arn_placeholder,
    workflow_placeholders,
    workflow_substitutions,
)
from tdev.data import schema

if TYPE_CHECKING:
    from conftest import Synthesized

COMMON_FUNCTION_ENV = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "AGNO_TELEMETRY",
    "TDEV_ENV",
    "TABLE_NAME",
    "TDEV_DEFAULT_MODEL",
}
# CDK adds `DependsOn` on a function's role next to the `GetAtt` of it: harmless, and not ours to change.
ACCEPTED_CFN_LINT_RULES = {"W3005", "W3010"}  # as .cfnlintrc, with its reasons


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def operational_alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The stack's own alarms, without the functions' rollback alarms (stacks/constructs/deployment.py)."""
    return {
        k: v
        for k, v in resources(template, "AWS::CloudWatch::Alarm").items()
        if not v["Properties"].get("AlarmDescription", "").startswith(ROLLBACK)
    }


def all_templates(synth: Synthesized) -> list[dict[str, Any]]:
    return [synth.template_json(stack) for stack in synth.stacks.all]


def statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every IAM statement of the template's policies and roles' inline policies."""
    found = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        found += policy["Properties"]["PolicyDocument"]["Statement"]
    for role in resources(template, "AWS::IAM::Role").values():
        for inline in role["Properties"].get("Policies", []):
            found += inline["PolicyDocument"]["Statement"]
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- Without synthesis -----------------------------------------------------------------------------------


def test_substitutions_fill_exactly_the_asl_placeholders_and_yield_json() -> None:
    # Given ARNs for every workflow function
    arns = {name: f"arn:aws:lambda:eu-west-1:111111111111:function:{name}" for name in WORKFLOW_FUNCTIONS}

    # When the substitutions are built and applied to the ASL file
    values = workflow_substitutions(function_arns=arns)
    text = DEFINITION_FILE.read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)

    # Then every placeholder is filled, nothing more, and the result is JSON with numbers where numbers go
    assert set(values) == workflow_placeholders()
    definition = json.loads(text)
    levels = definition["States"]["Run the levels one after another"]
    tasks = levels["ItemProcessor"]["States"]["Run the level's tasks in parallel"]
    assert tasks["MaxConcurrency"] == int(WORKFLOW_TUNING["MaxConcurrentTasks"])
    plan_retry = definition["States"]["Plan the request"]["Retry"][0]
    assert plan_retry["IntervalSeconds"] == int(WORKFLOW_TUNING["RetryIntervalSeconds"])
    assert plan_retry["MaxAttempts"] == int(WORKFLOW_TUNING["MaxTransientRetries"])
    assert definition["States"]["Plan the request"]["Parameters"]["FunctionName"] == arns["plan_request"]


def test_substitutions_refuse_a_missing_function() -> None:
    with pytest.raises(ValueError, match="run_agent"):
        workflow_substitutions(function_arns={"plan_request": "arn"})


def test_placeholder_names_follow_the_function_folders() -> None:
    assert function_arn_placeholder("record_task_failure") == "RecordTaskFailureFunctionArn"


def test_environments_and_overrides() -> None:
    assert set(ENVIRONMENTS) == {"dev", "staging", "prod"}
    assert settings_for("dev").default_model == DEFAULT_MODEL == "bedrock:amazon.nova-lite-v1:0"
    assert settings_for("prod", default_model="bedrock:amazon.nova-pro-v1:0").default_model.endswith(
        "pro-v1:0"
    )
    with pytest.raises(ValueError, match="dev, prod, staging"):
        settings_for("qa")


def test_a_missing_dependencies_layer_tells_the_user_to_run_make_layer(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="make layer"):
        tdev_app.dependencies_layer_or_exit(tmp_path / "build" / "layers" / "dependencies")


# --- Cache -----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_the_cache_is_private_encrypted_and_reachable_only_from_the_functions(
    environment: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(environment)
    template = synth.template_json(synth.stacks.cache)
    (cache,) = resources(template, "AWS::ElastiCache::ServerlessCache").values()
    props = cache["Properties"]
    assert props["Engine"] == "valkey"
    assert "KmsKeyId" in props  # the data stack's customer-managed key
    (cache_group,) = props["SecurityGroupIds"]
    groups = resources(template, "AWS::EC2::SecurityGroup")
    cache_group_id = cache_group["Fn::GetAtt"][0]
    # The cache's group admits Redis from the functions' group only, and nothing leaves it.
    ingress = groups[cache_group_id]["Properties"].get("SecurityGroupIngress", [])
    ingress += [r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()]
    assert len(ingress) == 1
    assert ingress[0]["FromPort"] == ingress[0]["ToPort"] == 6379
    assert ingress[0]["SourceSecurityGroupId"]["Fn::GetAtt"][0] != cache_group_id
    assert not any("CidrIp" in rule for rule in ingress)
    # Subnets are private (no public IPs on launch), flows are logged, DynamoDB and S3 stay off the NAT.
    subnet_ids = {ref["Ref"] for ref in props["SubnetIds"]}
    subnets = resources(template, "AWS::EC2::Subnet")
    assert all(not subnets[s]["Properties"]["MapPublicIpOnLaunch"] for s in subnet_ids)
    assert resources(template, "AWS::EC2::FlowLog")
    endpoints = resources(template, "AWS::EC2::VPCEndpoint").values()
    assert {e["Properties"]["VpcEndpointType"] for e in endpoints} == {"Gateway"}
    assert len(endpoints) == 2
    nat = resources(template, "AWS::EC2::NatGateway")
    assert len(nat) == (2 if environment == "prod" else 1)


@pytest.mark.slow
def test_the_read_cache_alarms_on_a_falling_hit_rate_and_on_memory(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.orchestration)  # next to the alarm topic (no stack cycle)
    alarms = {
        k: v["Properties"]
        for k, v in resources(template, "AWS::CloudWatch::Alarm").items()
        if k.startswith("CacheAlarms")
    }
    hit_rate = next(a for k, a in alarms.items() if "HitRate" in k)
    memory = next(a for k, a in alarms.items() if "Memory" in k)
    assert hit_rate["ComparisonOperator"] == "LessThanThreshold" and hit_rate["Threshold"] == 50
    expression = next(m for m in hit_rate["Metrics"] if "Expression" in m)["Expression"]
    assert expression.startswith("IF(") and "100 *" in expression
    selected = [m["MetricStat"]["Metric"] for m in hit_rate["Metrics"] if "MetricStat" in m]
    assert {m["MetricName"] for m in selected} == {"CacheHits", "CacheMisses"}
    caches = {d["Value"] for m in selected for d in m["Dimensions"] if d["Name"] == "Cache"}
    assert caches == {"executions", "apikeys", "roles", "registry"}  # every namespace a product path caches
    assert all({"Name": "service", "Value": "cache"} in m["Dimensions"] for m in selected)
    assert memory["MetricName"] == "BytesUsedForCache" and memory["Namespace"] == "AWS/ElastiCache"
    cache_name = resources(dev.template_json(dev.stacks.cache), "AWS::ElastiCache::ServerlessCache")
    (serverless,) = cache_name.values()
    assert memory["Dimensions"] == [
        {"Name": "clusterId", "Value": serverless["Properties"]["ServerlessCacheName"]}
    ]
    assert (
        memory["Threshold"] == int(settings_for("dev").cache_max_storage_gb * 1024**3 * 0.8)
        and memory["ComparisonOperator"] == "GreaterThanThreshold"
    )
    for alarm in (hit_rate, memory):
        assert alarm["TreatMissingData"] == "notBreaching"
        assert len(alarm["AlarmActions"]) == 1  # the encrypted alarm topic


# --- Data --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_table_is_built_from_the_schema(dev: Synthesized) -> None:
    template = dev.template(dev.stacks.data)
    key_id = next(iter(resources(dev.template_json(dev.stacks.data), "AWS::KMS::Key")))
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [
                {"AttributeName": schema.PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": schema.SORT_KEY, "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": Match.array_equals(
                [{"AttributeName": name, "AttributeType": "S"} for name in schema.key_attributes()]
            ),
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": index.name,
                    "KeySchema": [
                        {"AttributeName": index.partition_key, "KeyType": "HASH"},
                        {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for index in schema.GLOBAL_INDEXES
            ],
            "BillingMode": "PAY_PER_REQUEST",
            "TimeToLiveSpecification": {"AttributeName": schema.TTL_ATTRIBUTE, "Enabled": True},
            "SSESpecification": {
                "SSEEnabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
            },
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": False},
            "DeletionProtectionEnabled": False,
        },
    )


@pytest.mark.slow
def test_the_key_rotates_and_lets_logs_and_alarms_use_it(dev: Synthesized) -> None:
    dev.template(dev.stacks.data).has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like({"Sid": "AllowCloudWatchLogsOfThisAccount"}),
                        Match.object_like({"Sid": "AllowCloudWatchAlarmsToPublishToTheEncryptedTopic"}),
                    ]
                )
            },
        },
    )


@pytest.mark.slow
def test_prod_protects_its_data(prod: Synthesized) -> None:
    prod.template(prod.stacks.data).has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "DeletionProtectionEnabled": True,
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                }
            ),
        },
    )
    assert all(stack.termination_protection for stack in prod.stacks.all)


# --- Functions ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_function_is_arm64_python312_traced_with_json_logs_and_its_environment(
    dev: Synthesized,
) -> None:
    functions = {}
    for stack in (dev.stacks.orchestration, dev.stacks.api):
        functions.update(resources(dev.template_json(stack), "AWS::Lambda::Function"))
    # + the sandbox, the reconciler, api, authorizer, and the API signing secret's rotation function
    assert len(functions) == len(WORKFLOW_FUNCTIONS) + 5

    for logical_id, function in functions.items():
        props = function["Properties"]
        assert props["Architectures"] == ["arm64"], logical_id
        assert props["Runtime"] == "python3.12", logical_id
        assert props["Handler"] == "handler.lambda_handler", logical_id
        assert props["TracingConfig"] == {"Mode": "Active"}, logical_id
        assert props["LoggingConfig"]["LogFormat"] == "JSON", logical_id
        assert "Ref" in props["LoggingConfig"]["LogGroup"], logical_id  # the explicit log group
        variables = props["Environment"]["Variables"]
        # core + exactly the third-party layers the registry gives the function
        assert len(props["Layers"]) == 1 + len(layers_of(variables["POWERTOOLS_SERVICE_NAME"])), logical_id
        # The sandbox reads nothing but its payload, the secret rotation nothing but its secret: no table.
        tableless = variables["POWERTOOLS_SERVICE_NAME"] in ("sandbox", "rotate_secret")
        no_table = {"TABLE_NAME"} if tableless else set()
        assert set(variables) >= COMMON_FUNCTION_ENV - {"TDEV_DEFAULT_MODEL"} - no_table, logical_id
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "TDeveloper"
        assert variables["AGNO_TELEMETRY"] == "false"
        assert variables["TDEV_ENV"] == "dev"
        no_model = ("authorizer", "sandbox", "rotate_secret")
        if variables["POWERTOOLS_SERVICE_NAME"] not in no_model:
            assert variables["TDEV_DEFAULT_MODEL"] == DEFAULT_MODEL

        # The secret rotation talks to Secrets Manager alone (which invokes it), so it runs outside the VPC.
        if variables["POWERTOOLS_SERVICE_NAME"] == "rotate_secret":
            assert "VpcConfig" not in props and "REDIS_URL" not in variables, logical_id
            continue
        # Every other function runs in a VPC; all but the test sandbox (isolated subnets, no route to
        # anything) as clients of the cache, knowing where Redis is.
        assert set(props["VpcConfig"]) == {"SecurityGroupIds", "SubnetIds"}, logical_id
        if variables["POWERTOOLS_SERVICE_NAME"] == "sandbox":
            assert not variables.get("REDIS_URL"), logical_id
            continue
        assert "REDIS_URL" in variables, logical_id
        url = json.dumps(variables["REDIS_URL"])  # a Fn::Join of the serverless cache's endpoint
        assert "rediss://" in url and "?cluster=true" in url, logical_id  # TLS, cluster protocol

    api_variables = next(
        f
        for f in resources(dev.template_json(dev.stacks.api), "AWS::Lambda::Function").values()
        if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "api"
    )
    assert "STATE_MACHINE_ARN" in api_variables["Properties"]["Environment"]["Variables"]


@pytest.mark.slow
def test_run_agent_has_time_memory_and_only_bedrock_invoke(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.orchestration)
    by_service = {
        f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]: f["Properties"]
        for f in resources(template, "AWS::Lambda::Function").values()
    }
    agent = by_service["run_agent"]
    assert agent["Timeout"] == 300 and by_service["fix_failing_tests"]["MemorySize"] == agent["MemorySize"]
    others = {name: p for name, p in by_service.items() if name not in (*AGENT_FUNCTIONS, "sandbox")}
    assert all(agent["MemorySize"] > p["MemorySize"] for p in others.values())

    bedrock = [s for s in statements(template) if any(a.startswith("bedrock:") for a in as_list(s["Action"]))]
    assert len(bedrock) == len(AGENT_FUNCTIONS)  # the plan's agents and the verify loop's fixer
    assert bedrock[0]["Action"] == "bedrock:InvokeModel"  # Converse; nothing streams (from evidence)
    rendered = json.dumps(bedrock[0]["Resource"])
    assert ":bedrock:*::foundation-model/*" in rendered and "inference-profile/*" in rendered


def test_run_agent_alone_may_dead_letter_its_run_statistics_to_their_own_queue(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.orchestration)
    ((queue_id, queue),) = [
        (lid, q) for lid, q in resources(template, "AWS::SQS::Queue").items() if "WriteBehind" in lid
    ]
    properties = queue["Properties"]
    assert properties["KmsMasterKeyId"] and properties["MessageRetentionPeriod"] == 14 * 86_400
    functions = {
        f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]: f
        for f in resources(template, "AWS::Lambda::Function").values()
    }
    agent = functions["run_agent"]
    assert agent["Properties"]["Environment"]["Variables"]["TDEV_WRITE_BEHIND_DLQ_URL"] == {"Ref": queue_id}
    sends = [s for s in _role_statements(template, agent) if queue_id in json.dumps(s["Resource"])]
    assert [(s["Action"], s["Resource"]) for s in sends] == [
        ("sqs:SendMessage", {"Fn::GetAtt": [queue_id, "Arn"]})
    ]
    for name, function in functions.items():
        if name != "run_agent":
            assert queue_id not in json.dumps(_role_statements(template, function)), name
    (alarm,) = [
        a
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and queue_id in json.dumps(a["Properties"].get("Dimensions"))
    ]
    assert alarm["Properties"]["Threshold"] == 0 and len(alarm["Properties"]["AlarmActions"]) == 1


@pytest.mark.slow
def test_every_log_group_is_encrypted_and_expires(dev: Synthesized) -> None:
    for template in all_templates(dev):
        for logical_id, group in resources(template, "AWS::Logs::LogGroup").items():
            assert group["Properties"]["RetentionInDays"] == 30, logical_id
            assert "KmsKeyId" in group["Properties"], logical_id


@pytest.mark.slow
def test_no_iam_statement_allows_every_action(dev: Synthesized) -> None:
    for template in all_templates(dev):
        for statement in statements(template):
            for action in as_list(statement["Action"]):
                assert action != "*" and not action.endswith(":*"), statement
            if any(a.startswith("dynamodb:") for a in as_list(statement["Action"])):
                assert "*" not in json.dumps(statement["Resource"]), statement


# --- Workflow ----------------------------------------------------------------------------------------------


def _state_machine(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    machines = resources(synth.template_json(synth.stacks.orchestration), "AWS::StepFunctions::StateMachine")
    assert len(machines) == 1
    return next(iter(machines.items()))


def _function_logical_ids(synth: Synthesized) -> dict[str, str]:
    template = synth.template_json(synth.stacks.orchestration)
    return {
        f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]: logical_id
        for logical_id, f in resources(template, "AWS::Lambda::Function").items()
    }


def _alias_logical_ids(synth: Synthesized) -> dict[str, str]:
    """Function name -> the logical id of its `live` alias (what every caller invokes)."""
    template = synth.template_json(synth.stacks.orchestration)
    by_function = {
        alias["Properties"]["FunctionName"]["Ref"]: logical_id
        for logical_id, alias in resources(template, "AWS::Lambda::Alias").items()
    }
    return {name: by_function[function_id] for name, function_id in _function_logical_ids(synth).items()}


@pytest.mark.slow
def test_the_deployed_definition_is_the_asl_file_with_every_placeholder_substituted(dev: Synthesized) -> None:
    _, machine = _state_machine(dev)
    props = machine["Properties"]
    substitutions = props["DefinitionSubstitutions"]

    # The substitution keys are exactly the ASL's placeholders, and they match what the stack exposes
    asset = dev.outdir / f"asset.{props['DefinitionS3Location']['Key']}"
    deployed = asset.read_text()
    assert deployed == DEFINITION_FILE.read_text()
    assert set(substitutions) == workflow_placeholders(deployed)
    assert set(substitutions) == set(dev.stacks.orchestration.workflow_substitutions)
    for name, value in WORKFLOW_TUNING.items():
        assert substitutions[name] == value

    # Each function placeholder points at its own function's `live` alias
    ids = _alias_logical_ids(dev)
    for name in WORKFLOW_FUNCTIONS:
        assert substitutions[function_arn_placeholder(name)] == {"Ref": ids[name]}

    # After substitution, the definition is JSON
    text = deployed
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", value if isinstance(value, str) else f"resolved-{name}")
    assert json.loads(text)["StartAt"] == "Plan the request"


@pytest.mark.slow
def test_the_state_machine_is_standard_logged_and_traced(dev: Synthesized) -> None:
    dev.template(dev.stacks.orchestration).has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": {
                "Level": "ALL",
                "IncludeExecutionData": True,
                "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": Match.any_value()}}],
            },
        },
    )


@pytest.mark.slow
def test_the_state_machine_may_invoke_exactly_its_functions_and_publishes_nothing(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.orchestration)
    _, machine = _state_machine(dev)
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    role_statements = [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]

    invoke = [s for s in role_statements if "lambda:InvokeFunction" in as_list(s["Action"])]
    assert len(invoke) == 1
    expected = [
        {"Ref": logical_id}  # the `live` aliases the tasks invoke, no other version
        for name, logical_id in _alias_logical_ids(dev).items()
        if name in WORKFLOW_FUNCTIONS  # not the test sandbox: only the workflow's functions call it
    ]
    assert sorted(map(json.dumps, invoke[0]["Resource"])) == sorted(map(json.dumps, expected))
    assert "*" not in json.dumps(invoke[0]["Resource"])

    # Outcomes go through the outbox (written with the terminal status): the workflow puts no events
    assert [s for s in role_statements if "events:PutEvents" in as_list(s["Action"])] == []
    assert "EventBusName" not in machine["Properties"]["DefinitionSubstitutions"]


def _role_statements(template: dict[str, Any], function: dict[str, Any]) -> list[dict[str, Any]]:
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


@pytest.mark.slow
def test_the_reconciler_runs_every_minute_alone_and_may_do_exactly_what_it_calls(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.orchestration)
    ids = _function_logical_ids(dev)
    reconciler_id = ids["reconcile_executions"]
    reconciler_alias_id = _alias_logical_ids(dev)["reconcile_executions"]
    function = template["Resources"][reconciler_id]
    machine_id, _ = _state_machine(dev)

    # Every minute, one run at a time, told which state machine to look at
    rules = [
        r["Properties"]
        for r in resources(template, "AWS::Events::Rule").values()
        if r["Properties"].get("ScheduleExpression")
    ]
    assert [(r["ScheduleExpression"], r["Targets"][0]["Arn"]) for r in rules] == [
        ("rate(1 minute)", {"Ref": reconciler_alias_id})
    ]
    assert function["Properties"]["ReservedConcurrentExecutions"] == 1
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["STATE_MACHINE_ARN"] == {"Ref": machine_id}

    # Grants: the table and its status index (read, finish with the outbox item), the table's key,
    # start the workflow, describe its executions; nothing else of DynamoDB or Step Functions
    statements = _role_statements(template, function)
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert {a for a in actions if a.startswith("dynamodb:")} == {
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
    }
    assert {a for a in actions if a.startswith("states:")} == {
        "states:StartExecution",
        "states:DescribeExecution",
    }
    table_statement = next(s for s in statements if "dynamodb:Query" in as_list(s["Action"]))
    assert len(as_list(table_statement["Resource"])) == 2  # the table and GSI1, no other index
    assert "GSI1" in json.dumps(table_statement["Resource"]) and "GSI2" not in json.dumps(
        table_statement["Resource"]
    )
    start = next(s for s in statements if "states:StartExecution" in as_list(s["Action"]))
    assert start["Resource"] == {"Ref": machine_id}


@pytest.mark.slow
def test_the_bus_is_named_per_environment_and_archived(dev: Synthesized) -> None:
    template = dev.template(dev.stacks.orchestration)
    template.has_resource_properties("AWS::Events::EventBus", {"Name": "t-developer-dev"})
    template.has_resource_properties(
        "AWS::Events::Archive", {"EventPattern": {"source": [{"prefix": "t-developer"}]}, "RetentionDays": 7}
    )


# --- API ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_api_stage_is_throttled_logged_and_traced(dev: Synthesized) -> None:
    settings = settings_for("dev")
    template = dev.template(dev.stacks.api)
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "dev",
            "TracingEnabled": True,
            "AccessLogSetting": {"DestinationArn": Match.any_value(), "Format": Match.any_value()},
            "MethodSettings": [
                Match.object_like(
                    {
                        "HttpMethod": "*",
                        "ResourcePath": "/*",
                        "ThrottlingRateLimit": settings.api_throttle_rate_limit,
                        "ThrottlingBurstLimit": settings.api_throttle_burst_limit,
                        "LoggingLevel": "ERROR",
                        "DataTraceEnabled": False,
                    }
                )
            ],
        },
    )
    stage = next(iter(resources(dev.template_json(dev.stacks.api), "AWS::ApiGateway::Stage").values()))
    access_format = json.loads(stage["Properties"]["AccessLogSetting"]["Format"])
    assert {"requestId", "status", "traceId"} <= set(access_format)
    template.resource_count_is("AWS::ApiGateway::Account", 1)


@pytest.mark.slow
def test_the_api_serves_the_handler_routes_through_a_request_validator(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.api)
    validators = resources(template, "AWS::ApiGateway::RequestValidator")
    assert [v["Properties"]["ValidateRequestParameters"] for v in validators.values()] == [True]
    methods = resources(template, "AWS::ApiGateway::Method").values()
    assert sorted(m["Properties"]["HttpMethod"] for m in methods) == sorted(m for m, _ in ROUTES)
    for method in methods:
        assert method["Properties"]["RequestValidatorId"] == {"Ref": next(iter(validators))}
        assert method["Properties"]["Integration"]["Type"] == "AWS_PROXY"
    path_parts = {
        r["Properties"]["PathPart"] for r in resources(template, "AWS::ApiGateway::Resource").values()
    }
    assert path_parts == {p for _, path in ROUTES for p in path.strip("/").split("/")}
    expected = {"health", "requests", "{execution_id}", "agents", "api-keys", "revoke", "models", "route"}
    assert expected | {"sessions", "{session_id}", "messages"} <= path_parts


@pytest.mark.slow
def test_the_api_function_may_start_only_the_workflow(dev: Synthesized) -> None:
    starts = [
        s
        for s in statements(dev.template_json(dev.stacks.api))
        if "states:StartExecution" in as_list(s["Action"])
    ]
    assert len(starts) == 1
    assert not isinstance(starts[0]["Resource"], list) and "*" not in json.dumps(starts[0]["Resource"])


@pytest.mark.slow
def test_the_api_function_may_stop_only_the_workflows_executions(dev: Synthesized) -> None:
    stops = [
        s
        for s in statements(dev.template_json(dev.stacks.api))
        if "states:StopExecution" in as_list(s["Action"])
    ]
    assert len(stops) == 1 and as_list(stops[0]["Action"]) == ["states:StopExecution"]
    resource = json.dumps(stops[0]["Resource"])
    # arn:...:execution:<the workflow's name>:* -- the executions of the one state machine, no other
    assert ":execution:" in resource and "RequestWorkflow" in resource and '"*"' not in resource


@pytest.mark.slow
def test_waf_guards_the_api_where_enabled(dev: Synthesized, prod: Synthesized) -> None:
    dev.template(dev.stacks.api).resource_count_is("AWS::WAFv2::WebACL", 0)
    prod.template(prod.stacks.api).resource_count_is("AWS::WAFv2::WebACLAssociation", 1)


# --- Alarms ------------------------------------------------------------------------------------------------


def _is_cache_alarm(alarm: dict[str, Any]) -> bool:
    properties = alarm["Properties"]
    return "Metrics" in properties or properties.get("Namespace") == "AWS/ElastiCache"


@pytest.mark.slow
def test_alarms_cover_workflow_functions_and_api_and_notify_the_topic(dev: Synthesized) -> None:
    orchestration = dev.template_json(dev.stacks.orchestration)
    alarms = [  # (the functions' rollback alarms are CodeDeploy's: tests/infrastructure/test_deployments.py)
        *operational_alarms(orchestration).values(),
        *operational_alarms(dev.template_json(dev.stacks.api)).values(),
    ]
    # (the read cache's alarms, built beside the alarm topic, are asserted by the cache alarm tests, the
    # API's service objectives by the test below)
    alarms = [a for a in alarms if not _is_cache_alarm(a) and not _is_objective(a)]
    metrics = [a["Properties"]["MetricName"] for a in alarms]
    assert "ExecutionsFailed" in metrics and "5XXError" in metrics
    assert metrics.count("Errors") == len(WORKFLOW_FUNCTIONS) + 1  # and the reconciler
    assert metrics.count("Throttles") == len(WORKFLOW_FUNCTIONS) + 1
    for alarm in alarms:
        assert alarm["Properties"]["Threshold"] == 0
        assert alarm["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"
        assert len(alarm["Properties"]["AlarmActions"]) == 1

    topic_id = next(iter(resources(orchestration, "AWS::SNS::Topic")))
    assert all(
        a["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
        for a in operational_alarms(orchestration).values()
    )


def _is_objective(alarm: dict[str, Any]) -> bool:
    """A threshold on a rate or a percentile (asserted by its own test), not an alarm on any event."""
    routing = alarm["Properties"].get("MetricName") in ("RoutingLatency", "RoutingErrors")
    return _is_api_objective(alarm) or _is_spend_alarm(alarm) or routing


@pytest.mark.slow
def test_routing_slower_than_a_second_at_p99_for_15_minutes_alarms(dev: Synthesized) -> None:
    orchestration = dev.template_json(dev.stacks.orchestration)
    (routing,) = [
        a["Properties"]
        for a in operational_alarms(orchestration).values()
        if a["Properties"].get("MetricName") == "RoutingLatency"
    ]
    assert routing["Dimensions"] == [{"Name": "service", "Value": "routing"}]
    assert routing["ExtendedStatistic"] == "p99" and routing["Threshold"] == 1000
    assert routing["EvaluationPeriods"] == 3
    assert routing["ComparisonOperator"] == "GreaterThanThreshold" and len(routing["AlarmActions"]) == 1


@pytest.mark.slow
def test_over_5_percent_of_routing_decisions_failing_for_15_minutes_alarms(dev: Synthesized) -> None:
    orchestration = dev.template_json(dev.stacks.orchestration)
    (errors,) = [
        a["Properties"]
        for a in operational_alarms(orchestration).values()
        if a["Properties"].get("MetricName") == "RoutingErrors"
    ]
    assert errors["Namespace"] == "TDeveloper"
    assert errors["Dimensions"] == [{"Name": "service", "Value": "routing"}]
    # 1 per failed decision, 0 per other: the Average is the error rate
    assert errors["Statistic"] == "Average" and errors["Threshold"] == 0.05
    assert errors["EvaluationPeriods"] == 3 and errors["Period"] == 300
    assert errors["ComparisonOperator"] == "GreaterThanThreshold" and len(errors["AlarmActions"]) == 1
    assert errors["TreatMissingData"] == "notBreaching"


def _is_spend_alarm(alarm: dict[str, Any]) -> bool:
    return alarm["Properties"].get("MetricName") == "LLMCostMicroUSD"


@pytest.mark.slow
def test_the_default_models_spend_over_the_hourly_threshold_alarms(dev: Synthesized) -> None:
    settings = dev.stacks.orchestration.settings
    orchestration = dev.template_json(dev.stacks.orchestration)
    (spend,) = [a["Properties"] for a in operational_alarms(orchestration).values() if _is_spend_alarm(a)]
    assert spend["Namespace"] == "TDeveloper" and spend["Statistic"] == "Sum" and spend["Period"] == 3600
    assert spend["Dimensions"] == [{"Name": "model", "Value": settings.default_model}]
    assert spend["Threshold"] == settings.model_spend_alarm_usd_per_hour * 1_000_000 == 5_000_000
    assert spend["ComparisonOperator"] == "GreaterThanThreshold" and len(spend["AlarmActions"]) == 1


def _is_api_objective(alarm: dict[str, Any]) -> bool:
    return "for 15 minutes" in alarm["Properties"].get("AlarmDescription", "") and "API" in str(alarm)


@pytest.mark.slow
def test_the_apis_p99_over_a_second_or_error_rate_over_5_percent_alarm_for_15_minutes(
    dev: Synthesized,
) -> None:
    from stacks.api_stack import API_ERROR_RATE_PERCENT, API_P99_LATENCY_MS

    api = dev.template_json(dev.stacks.api)
    alarms = {k: v["Properties"] for k, v in operational_alarms(api).items()}
    (latency,) = [a for a in alarms.values() if a.get("MetricName") == "Latency"]
    assert (latency["ExtendedStatistic"], latency["Threshold"], API_P99_LATENCY_MS) == ("p99", 1000, 1000)
    assert latency["EvaluationPeriods"] == 3 and latency["Period"] == 300
    assert {d["Name"]: d["Value"] for d in latency["Dimensions"]} == {"ApiName": "t-developer-dev"}
    (rate,) = [a for a in alarms.values() if "Metrics" in a]
    expression = next(m["Expression"] for m in rate["Metrics"] if "Expression" in m)
    assert expression == "IF(requests > 0, 100 * errors / requests, 0)"
    used = {m["Id"]: m["MetricStat"]["Metric"]["MetricName"] for m in rate["Metrics"] if "MetricStat" in m}
    assert used == {"errors": "5XXError", "requests": "Count"}
    assert (rate["Threshold"], API_ERROR_RATE_PERCENT, rate["EvaluationPeriods"]) == (5, 5, 3)
    for alarm in (latency, rate):
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["TreatMissingData"] == "notBreaching" and len(alarm["AlarmActions"]) == 1


@pytest.mark.slow
def test_the_alarm_topic_is_encrypted_and_accepts_only_tls(dev: Synthesized) -> None:
    template = dev.template(dev.stacks.orchestration)
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )


# --- cdk-nag and cfn-lint ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_cdk_nag_finds_nothing_unacknowledged(environment: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(environment)
    reports = {r["pluginName"]: r for r in synth.validation_report["pluginReports"]}
    assert "AwsSolutions" in reports, reports.keys()
    for name, report in reports.items():
        unacknowledged = [(v["ruleName"], v["severity"]) for v in report["violations"]]
        assert unacknowledged == [], f"{name}: {unacknowledged}"
    for finding in reports["AwsSolutions"]["suppressedViolations"]:
        assert finding["acknowledgedId"].startswith("AwsSolutions::")
        assert len(finding["reason"]) > 40, finding["ruleName"]  # a reason, not a shrug


@pytest.mark.slow
def test_only_the_public_routes_are_acknowledged_as_unauthenticated(dev: Synthesized) -> None:
    """Authentication is real: APIG4 (no authorization) is acknowledged on the public methods only (the
    health check and the API's description, tdev.security.routes)."""
    report = next(r for r in dev.validation_report["pluginReports"] if r["pluginName"] == "AwsSolutions")
    unauthenticated = [f for f in report["suppressedViolations"] if f["ruleName"] == "AwsSolutions-APIG4"]
    api = f"{dev.stacks.api.stack_name}/RestApi/Default"
    # ... and the WebSocket API's routes: API Gateway authorizes WebSocket APIs on $connect only, and the
    # websocket function authenticates $connect itself (tests/functions/test_websocket_handlers.py).
    websocket = f"{dev.stacks.realtime.stack_name}/WebSocketApi"
    assert sorted(f["acknowledgedAt"] for f in unauthenticated) == sorted(
        [
            f"{api}/docs/GET",
            f"{api}/health/GET",
            f"{api}/openapi.json/GET",
            *(f"{websocket}/{route}-Route" for route in ("$connect", "$disconnect", "$default", "subscribe")),
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_cfn_lint_finds_no_errors(environment: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(environment)
    for stack in synth.stacks.all:
        matches = lint_file(synth.template_path(stack))
        problems = [
            f"{m.rule.id} {m.message} ({m.path_string if hasattr(m, 'path_string') else m.linenumber})"
            for m in matches
            if m.rule.id not in ACCEPTED_CFN_LINT_RULES
        ]
        assert problems == [], f"{stack.stack_name}: {problems}"


# --- Workspaces and the test sandbox ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_sandbox_has_no_network_path_and_no_permissions_beyond_its_logs(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.orchestration)
    functions = resources(template, "AWS::Lambda::Function")
    (_sandbox_id, sandbox), *_ = [
        (i, f)
        for i, f in functions.items()
        if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "sandbox"
    ]
    # In a VPC whose subnets are isolated (no NAT or internet gateway at all in this template) ...
    assert "VpcConfig" in sandbox["Properties"]
    assert not resources(template, "AWS::EC2::NatGateway") and not resources(
        template, "AWS::EC2::InternetGateway"
    )
    assert not resources(template, "AWS::EC2::VPCEndpoint")
    # ... with a security group that allows no egress (CDK's placeholder rule matches nothing)
    (group,) = [
        g
        for g in resources(template, "AWS::EC2::SecurityGroup").values()
        if "no outbound" in g["Properties"]["GroupDescription"]
    ]
    assert [rule["CidrIp"] for rule in group["Properties"]["SecurityGroupEgress"]] == ["255.255.255.255/32"]
    # ... and a role that may write its logs, trace, and manage its network interfaces: nothing else
    role_id = sandbox["Properties"]["Role"]["Fn::GetAtt"][0]
    actions = {
        action
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        for action in as_list(statement["Action"])
    }
    assert not {
        a for a in actions if a.split(":")[0] in {"dynamodb", "s3", "kms", "lambda", "bedrock", "states"}
    }, actions
    assert "SANDBOX_FUNCTION_NAME" not in sandbox["Properties"]["Environment"]["Variables"]
    assert "WORKSPACE_BUCKET" not in sandbox["Properties"]["Environment"]["Variables"]


@pytest.mark.slow
def test_the_workspace_bucket_is_encrypted_private_and_expiring(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.orchestration)
    (bucket,) = [
        b
        for b in resources(template, "AWS::S3::Bucket").values()
        if "LifecycleConfiguration" in b["Properties"] and "LoggingConfiguration" in b["Properties"]
    ]
    props = bucket["Properties"]
    assert (
        props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
            "SSEAlgorithm"
        ]
        == "aws:kms"
    )
    assert props["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert (rule["Prefix"], rule["ExpirationInDays"]) == ("workspaces/", 7)
