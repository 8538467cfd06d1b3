"""The realtime stack: the WebSocket API, its routes' function and the pusher (stacks/realtime_stack.py)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from stacks.permissions import TABLE_ACTIONS
from stacks.realtime_stack import ROUTES
from tdev.environment import Var

if TYPE_CHECKING:
    from conftest import Synthesized

pytestmark = pytest.mark.slow


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def functions(template: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Our functions by service name: (logical id, properties)."""
    return {
        f["Properties"]["Environment"]["Variables"][Var.POWERTOOLS_SERVICE_NAME]: (k, f["Properties"])
        for k, f in resources(template, "AWS::Lambda::Function").items()
    }


def role_statements(template: dict[str, Any], function_logical_id: str) -> list[dict[str, Any]]:
    role = template["Resources"][function_logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    found: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return value if isinstance(value, list) else [value]


def test_the_websocket_api_routes_connect_disconnect_subscribe_and_default_to_the_live_alias(
    dev: Synthesized,
) -> None:
    template = dev.template_json(dev.stacks.realtime)
    (api,) = resources(template, "AWS::ApiGatewayV2::Api").values()
    assert api["Properties"]["ProtocolType"] == "WEBSOCKET"
    assert api["Properties"]["RouteSelectionExpression"] == "$request.body.action"
    route_resources = resources(template, "AWS::ApiGatewayV2::Route")
    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in route_resources.values()}
    assert set(routes) == set(ROUTES)
    # subscribe and $default answer with the function's frame; $connect/$disconnect answer nothing
    responded = {
        route_resources[response["Properties"]["RouteId"]["Ref"]]["Properties"]["RouteKey"]
        for response in resources(template, "AWS::ApiGatewayV2::RouteResponse").values()
    }
    assert responded == {"subscribe", "$default"}
    # every integration invokes the websocket function's live alias
    (websocket_id, _) = functions(template)["websocket"]
    alias = next(
        k
        for k, a in resources(template, "AWS::Lambda::Alias").items()
        if a["Properties"]["FunctionName"] == {"Ref": websocket_id}
    )
    uris = [
        i["Properties"]["IntegrationUri"]
        for i in resources(template, "AWS::ApiGatewayV2::Integration").values()
    ]
    assert uris and all(json.dumps({"Ref": alias}) in json.dumps(u) for u in uris)


def test_the_stage_is_throttled_and_logs_json_access_records(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.realtime)
    (stage,) = resources(template, "AWS::ApiGatewayV2::Stage").values()
    properties = stage["Properties"]
    assert properties["StageName"] == "dev" and properties["AutoDeploy"] is True
    assert properties["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0
    assert properties["DefaultRouteSettings"]["ThrottlingBurstLimit"] > 0
    record = json.loads(properties["AccessLogSettings"]["Format"])
    assert {"connectionId", "routeKey", "status", "error"} <= set(record)
    (logs,) = [
        group
        for logical_id, group in resources(template, "AWS::Logs::LogGroup").items()
        if properties["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": [logical_id, "Arn"]}
    ]
    assert "KmsKeyId" in logs["Properties"] and logs["Properties"]["RetentionInDays"] > 0


def test_only_the_pusher_may_post_to_connections_and_only_post_on_this_stage(dev: Synthesized) -> None:
    posting: list[tuple[str, dict[str, Any]]] = []
    for stack in dev.stacks.all:
        template = dev.template_json(stack)
        for policy in resources(template, "AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                if any(
                    a.startswith("execute-api:ManageConnections") or a == "execute-api:*"
                    for a in actions(statement)
                ):
                    posting.append((stack.stack_name, statement))
    template = dev.template_json(dev.stacks.realtime)
    (pusher_id, _) = functions(template)["push_progress"]
    ((stack_name, statement),) = posting
    assert stack_name == dev.stacks.realtime.stack_name
    assert statement in role_statements(template, pusher_id)
    assert actions(statement) == ["execute-api:ManageConnections"]
    resource = json.dumps(statement["Resource"])
    (api_id,) = resources(template, "AWS::ApiGatewayV2::Api")
    assert json.dumps({"Ref": api_id}) in resource and "/dev/POST/@connections/*" in resource


def test_the_pusher_reads_only_new_progress_events_and_subscriptions_from_the_table_stream(
    dev: Synthesized,
) -> None:
    template = dev.template_json(dev.stacks.realtime)
    (mapping,) = resources(template, "AWS::Lambda::EventSourceMapping").values()
    properties = mapping["Properties"]
    assert "StreamArn" in json.dumps(properties["EventSourceArn"])
    (pattern,) = [json.loads(f["Pattern"]) for f in properties["FilterCriteria"]["Filters"]]
    assert pattern == {
        "eventName": ["INSERT"],
        "dynamodb": {"NewImage": {"entity": {"S": ["PROGRESS", "SUBSCRIPTION"]}}},
    }
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["BisectBatchOnFunctionError"] is True and properties["MaximumRetryAttempts"] > 0
    (pusher_id, _) = functions(template)["push_progress"]
    pusher_alias = next(
        k
        for k, a in resources(template, "AWS::Lambda::Alias").items()
        if a["Properties"]["FunctionName"] == {"Ref": pusher_id}
    )
    assert json.dumps({"Ref": pusher_alias}) in json.dumps(properties["FunctionName"])  # the live alias
    stream_reads = [s for s in role_statements(template, pusher_id) if s.get("Sid") == "ReadTheTableStream"]
    assert stream_reads and "StreamArn" in json.dumps(stream_reads[0]["Resource"])


def test_each_function_has_its_table_actions_its_environment_and_its_network(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.realtime)
    found = functions(template)
    assert set(found) == {"websocket", "push_progress"}
    for name, (logical_id, properties) in found.items():
        assert properties["Architectures"] == ["arm64"] and properties["Runtime"] == "python3.12"
        assert properties["TracingConfig"] == {"Mode": "Active"}
        table = [s for s in role_statements(template, logical_id) if s.get("Sid") == "ReadAndWriteTableData"]
        assert [sorted(actions(s)) for s in table] == [sorted(TABLE_ACTIONS[name])], name
        variables = properties["Environment"]["Variables"]
        assert Var.TABLE_NAME in variables and Var.TDEV_DEFAULT_MODEL not in variables  # calls no model
    # The routes' function authenticates like the authorizer: the issuer's settings, Redis in the VPC
    websocket = found["websocket"][1]
    variables = websocket["Environment"]["Variables"]
    assert {Var.TDEV_JWT_ISSUER, Var.TDEV_JWT_AUDIENCE, Var.REDIS_URL, Var.KMS_KEY_ID} <= set(variables)
    assert set(websocket["VpcConfig"]) == {"SecurityGroupIds", "SubnetIds"}
    # The pusher talks to DynamoDB and API Gateway's public endpoint: outside the VPC, knowing the endpoint
    pusher = found["push_progress"][1]
    assert "VpcConfig" not in pusher
    endpoint = json.dumps(pusher["Environment"]["Variables"][Var.TDEV_WEBSOCKET_ENDPOINT])
    assert "https://" in endpoint and ".execute-api." in endpoint and "/dev" in endpoint
    assert pusher["Timeout"] < 30  # under the send lease (tdev.data.connections.LEASE_SECONDS)


def test_connections_expire_with_the_tables_ttl(dev: Synthesized) -> None:
    from tdev.data import connections, schema

    data = dev.template_json(dev.stacks.data)
    (table,) = [
        t
        for t in resources(data, "AWS::DynamoDB::Table").values()
        if {"AttributeName": schema.PARTITION_KEY, "KeyType": "HASH"} in t["Properties"]["KeySchema"]
    ]
    assert table["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": schema.TTL_ATTRIBUTE,
        "Enabled": True,
    }
    assert connections.CONNECTION_TTL_SECONDS > 2 * 3600  # outlives API Gateway's longest connection
