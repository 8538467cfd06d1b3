"""Live progress pushed to clients: the WebSocket API, its routes' function, and the pusher.

Reads top to bottom like the path of an event:
1. a client connects (`wss://.../<stage>?token=<JWT>` or `?api_key=<key>`): the `websocket` function
   authenticates it like the REST API's authorizer and records the connection (tdev.realtime);
2. it sends `{"action": "subscribe", "execution_id": ..., "last_event_id": n}`: the same function checks
   it may read the execution and records the subscription (the route returns the function's answer);
3. the `push_progress` function reads the table's stream (new progress events, new subscriptions) and
   posts each subscriber its execution's events: the only role allowed to post to connections.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks import acknowledge, as_nag_prints
from stacks.cache_stack import FunctionNetwork
from stacks.constructs import TdevFunction, TdevLayers
from stacks.data_stack import grant_table_data_access
from stacks.security_stack import token_environment
from stacks.settings import EnvironmentSettings
from tdev.environment import Var

# The routes of the WebSocket API (route selection on the frame's `action`); $default answers an error
# frame naming `action` for anything else.
ROUTES = ("$connect", "$disconnect", "subscribe", "$default")
# The stream mapping: retries in order (one execution's events stay ordered), then gives the record up:
# the progress log still holds it, and a client that reconnects resumes from its last event id.
PUSH_RETRY_ATTEMPTS = 5
PUSH_MAX_RECORD_AGE = Duration.hours(1)
# The pusher's timeout stays under a subscription's send lease (tdev.data.connections.LEASE_SECONDS), so a
# lapsed lease means a dead sender, never a slow one.
LEASE_TIMEOUT_SECONDS = 25


class RealtimeStack(Stack):
    """Exposes `.api`, `.stage`, `.functions` (websocket, push_progress) and `.url` (wss://)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        table: dynamodb.ITable,
        key: kms.IKey,
        token_issuer: str,
        token_audience: str,
        roles_claim: str,
        token_use: str = "access",
        core_layer_path: str,
        dependencies_layer_path: str,
        network: FunctionNetwork | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        layers = TdevLayers(
            self, "Layers", core_path=core_layer_path, dependencies_path=dependencies_layer_path
        )

        # 1-2. The routes' function: authenticates like the authorizer (same variables, in the VPC for the
        # revocations and failed-authentication counts in Redis), reads executions like the API.
        websocket = TdevFunction(
            self,
            "WebSocket",
            name="websocket",
            settings=settings,
            layers=layers,
            log_key=key,
            environment={
                Var.TABLE_NAME: table.table_name,
                Var.KMS_KEY_ID: key.key_arn,
                **token_environment(token_issuer, token_audience, roles_claim, token_use),
            },
            timeout=Duration.seconds(10),
            network=network,
        )
        grant_table_data_access(table, key, websocket.function, "websocket")

        integration = integrations.WebSocketLambdaIntegration("Routes", websocket.alias)
        self.api = apigwv2.WebSocketApi(
            self,
            "WebSocketApi",
            api_name=f"t-developer-{settings.name}-progress",
            description="T-Developer: live progress of executions (connect, subscribe, pushed events)",
            route_selection_expression="$request.body.action",
            connect_route_options=apigwv2.WebSocketRouteOptions(integration=integration),
            disconnect_route_options=apigwv2.WebSocketRouteOptions(integration=integration),
            default_route_options=apigwv2.WebSocketRouteOptions(
                integration=integration, return_response=True
            ),
        )
        self.api.add_route("subscribe", integration=integration, return_response=True)
        for route in ROUTES:
            acknowledge(
                self.api.node.find_child(f"{route}-Route"),
                "AwsSolutions-APIG4",
                "A WebSocket API authorizes only $connect, and $connect is authenticated by the websocket "
                "function itself (tdev.realtime.connect: the REST authorizer's domain code, a 401 refuses "
                "the upgrade); every later frame arrives on that authenticated connection, and subscribe "
                "checks the caller may read the execution."
                if route == "$connect"
                else "Frames on a connection $connect authenticated (API Gateway authorizes WebSocket APIs "
                "on $connect only); subscribe checks the connection's caller may read the execution.",
            )

        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=settings.log_retention,
            encryption_key=key,
            removal_policy=settings.removal_policy,
        )
        self.stage = apigwv2.WebSocketStage(
            self,
            "Stage",
            web_socket_api=self.api,
            stage_name=settings.name,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=settings.api_throttle_rate_limit, burst_limit=settings.api_throttle_burst_limit
            ),
        )
        stage = self.stage.node.default_child
        stage.access_log_settings = apigwv2.CfnStage.AccessLogSettingsProperty(  # type: ignore[union-attr]
            destination_arn=access_logs.log_group_arn,
            format=(
                '{"requestId":"$context.requestId","connectionId":"$context.connectionId",'
                '"routeKey":"$context.routeKey","eventType":"$context.eventType",'
                '"status":"$context.status","ip":"$context.identity.sourceIp",'
                '"requestTime":"$context.requestTime","error":"$context.error.message",'
                '"integrationError":"$context.integrationErrorMessage"}'
            ),
        )
        self.url = self.stage.url
        self.management_endpoint = self.stage.callback_url

        # 3. The pusher: new progress events and new subscriptions from the table's stream. It is the
        # stream's second reader beside the outbox publisher: DynamoDB Streams serves two per shard without
        # throttling, so a third consumer of this stream would need a fan-out (e.g. through EventBridge).
        pusher = TdevFunction(
            self,
            "PushProgress",
            name="push_progress",
            settings=settings,
            layers=layers,
            log_key=key,
            environment={
                Var.TABLE_NAME: table.table_name,
                Var.TDEV_WEBSOCKET_ENDPOINT: self.management_endpoint,
            },
            timeout=Duration.seconds(LEASE_TIMEOUT_SECONDS),
        )
        grant_table_data_access(table, key, pusher.function, "push_progress")
        # The only role that may post to this API's connections: POST on this stage's @connections (the
        # stage's own grant would also allow GET and DELETE, which the pusher never calls).
        pusher.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="PostToConnections",
                actions=["execute-api:ManageConnections"],
                resources=[
                    self.format_arn(
                        service="execute-api",
                        resource=self.api.api_id,
                        resource_name=f"{self.stage.stage_name}/POST/@connections/*",
                    )
                ],
            )
        )
        pusher.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadTheTableStream",
                actions=["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                resources=[table.table_stream_arn or f"{table.table_arn}/stream/*"],
            )
        )
        lambda_.EventSourceMapping(
            self,
            "ProgressStream",
            target=pusher.alias,
            event_source_arn=table.table_stream_arn,
            starting_position=lambda_.StartingPosition.LATEST,
            batch_size=100,
            bisect_batch_on_error=True,
            retry_attempts=PUSH_RETRY_ATTEMPTS,
            max_record_age=PUSH_MAX_RECORD_AGE,
            report_batch_item_failures=True,
            # Only what someone may be waiting for: a new progress event or a new subscription.
            filters=[
                lambda_.FilterCriteria.filter(
                    {
                        "eventName": lambda_.FilterRule.is_equal("INSERT"),
                        "dynamodb": {
                            "NewImage": {"entity": {"S": lambda_.FilterRule.or_("PROGRESS", "SUBSCRIPTION")}}
                        },
                    }
                )
            ],
        )
        acknowledge(
            pusher.role,
            as_nag_prints(
                self,
                "AwsSolutions-IAM5[Resource::arn:{partition}:execute-api:{region}:{account}:"
                f"<{self.get_logical_id(self.api.node.default_child)}>/{settings.name}/POST/@connections/*]",  # type: ignore[arg-type]
            ),
            "Connection ids are API Gateway's, known at run time: the grant is this API's stage's "
            "@connections only (post to a subscriber, answer 410 for a gone one).",
        )
        self.functions = {"websocket": websocket, "push_progress": pusher}
