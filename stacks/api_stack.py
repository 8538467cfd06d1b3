"""The REST API: `/health`, `/v1/requests`, `/v1/executions/{execution_id}`, `/v1/agents` → `api`."""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks import acknowledge, as_nag_prints
from stacks.cache_stack import FunctionNetwork
from stacks.configuration import FlagStore, grant_configuration
from stacks.constructs import TdevFunction, TdevLayers
from stacks.data_stack import grant_field_encryption, grant_table_data_access
from stacks.security_stack import token_environment
from stacks.settings import EnvironmentSettings
from tdev.environment import Var
from tdev.secrets import API_SIGNING, platform_secret_name
from tdev.security.headers import SECURITY_HEADERS
from tdev.security.routes import PUBLIC_ROUTES
from tdev.security.usageplans import ENV_TAG

API_HANDLER_DIR = Path(__file__).resolve().parents[1] / "functions" / "api"
_ROUTE_VERBS = frozenset({"get", "post", "put", "delete", "patch"})


def gateway_path(path: str) -> str:
    """A resolver path in API Gateway's form: `<name>` → `{name}`, a trailing `/.+` → a greedy `{path+}`."""
    path = re.sub(r"<(\w+)>", r"{\1}", path)
    return re.sub(r"/\.\+$", "/{path+}", path)


def handler_routes(folder: Path = API_HANDLER_DIR) -> tuple[tuple[str, str], ...]:
    """(method, path) of every route the API handler's resolver serves, in API Gateway's path form.

    Read from the route decorators in `functions/api/` (`@app.get("/v1/executions/<execution_id>")`,
    `@router.post(...)`) rather than by importing the handler: its module-level set-up is the Lambda's
    (environment contract, clients), not the synth's. tests/infrastructure/test_api_routes.py checks that this
    equals the resolver's own route table and the template's resources and methods."""
    routes: set[tuple[str, str]] = set()
    for source in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Call)
                    and isinstance(decorator.func, ast.Attribute)
                    and decorator.func.attr in _ROUTE_VERBS
                    and isinstance(decorator.func.value, ast.Name)
                    and decorator.func.value.id in ("app", "router")
                    and decorator.args
                    and isinstance(decorator.args[0], ast.Constant)
                    and isinstance(decorator.args[0].value, str)
                ):
                    routes.add((decorator.func.attr.upper(), gateway_path(decorator.args[0].value)))
    return tuple(sorted(routes, key=lambda route: (route[1], route[0])))


# (method, path): the routes `functions/api/` serves. Anything else never reaches the function.
ROUTES: tuple[tuple[str, str], ...] = handler_routes()


def _executions_finding(consumer: Stack, state_machine: sfn.IStateMachine) -> str:
    """The cdk-nag IAM5 finding of a grant on `state_machine`'s executions (arn:...:execution:<name>:*), as
    it prints in `consumer`: the name comes from the producer stack's output that CDK publishes for the
    machine's ARN ("Publish/Output<reference>", the id's hash as CDK's unique ids make it)."""
    producer = Stack.of(state_machine)
    reference = json.dumps(
        producer.resolve(state_machine.state_machine_arn),
        separators=(",", ":"),  # {"Ref": "<logical id>"}
    )
    output_id = f"Output{reference}"
    digest = hashlib.md5(f"Publish/{output_id}".encode(), usedforsecurity=False).hexdigest()[:8].upper()
    output_name = "Publish" + re.sub(r"[^A-Za-z0-9]", "", output_id) + digest
    region = '{"Ref":"AWS::Region"}' if Token.is_unresolved(producer.region) else json.dumps(producer.region)
    machine_name = (
        '{"Fn::Select":[6,{"Fn::Split":[":",{"Fn::GetStackOutput":{"StackName":"'
        + producer.stack_name
        + '","Region":'
        + region
        + ',"OutputName":"'
        + output_name
        + '"}}]}]}'
    )
    prefix = as_nag_prints(consumer, "AwsSolutions-IAM5[Resource::arn:{partition}:states:{region}:{account}:")
    return f"{prefix}execution:{machine_name}:*]"


OPTIONAL_HEADERS = (
    "Idempotency-Key",
    "X-Correlation-Id",
    "Authorization",
    "X-Api-Key",
    "X-Tdev-Timestamp",
    "X-Tdev-Nonce",
    "X-Tdev-Signature",
)
# What API Gateway answers itself when the authorizer refuses: JSON like the function's errors, same headers.
GATEWAY_RESPONSES = {
    "UNAUTHORIZED": ("401", "Unauthorized", "authentication required or credentials invalid"),
    "ACCESS_DENIED": ("403", "Forbidden", "the authorizer denied this request"),
}

ACCESS_LOG_FORMAT = {
    "requestId": apigw.AccessLogField.context_request_id(),
    "extendedRequestId": apigw.AccessLogField.context_extended_request_id(),
    "traceId": apigw.AccessLogField.context_xray_trace_id(),
    "ip": apigw.AccessLogField.context_identity_source_ip(),
    "userAgent": apigw.AccessLogField.context_identity_user_agent(),
    "requestTime": apigw.AccessLogField.context_request_time(),
    "httpMethod": apigw.AccessLogField.context_http_method(),
    "resourcePath": apigw.AccessLogField.context_resource_path(),
    "path": apigw.AccessLogField.context_path(),
    "status": apigw.AccessLogField.context_status(),
    "responseLength": apigw.AccessLogField.context_response_length(),
    "responseLatency": apigw.AccessLogField.context_response_latency(),
    "integrationLatency": apigw.AccessLogField.context_integration_latency(),
    "integrationStatus": apigw.AccessLogField.context_integration_status(),
    "errorMessage": apigw.AccessLogField.context_error_message(),
    "wafResponseCode": apigw.AccessLogField.context_waf_response_code(),
}


# Service objectives of the API (spec 1.15.4), each an alarm to the alarm topic.
API_P99_LATENCY_MS = 1_000
API_ERROR_RATE_PERCENT = 5


class ApiStack(Stack):
    """Exposes `.api` (the REST API), `.function` (the `api` handler) and `.api_url`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        table: dynamodb.ITable,
        key: kms.IKey,
        state_machine: sfn.IStateMachine,
        alarm_topic: sns.ITopic,
        token_issuer: str,
        token_audience: str,
        roles_claim: str,
        token_use: str = "access",
        field_key: kms.IKey | None = None,
        core_layer_path: str,
        dependencies_layer_path: str,
        network: FunctionNetwork | None = None,
        api_signing_secret: secretsmanager.ISecret | None = None,
        flags: FlagStore,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        # The handler: submits requests (starts the workflow) and reads executions and agents. It gets its
        # own copies of the layers (same assets): no cross-stack reference to a layer version to outlive.
        layers = TdevLayers(
            self, "Layers", core_path=core_layer_path, dependencies_path=dependencies_layer_path
        )
        handler = TdevFunction(
            self,
            "Api",
            name="api",
            settings=settings,
            layers=layers,
            log_key=key,
            environment={
                Var.TABLE_NAME: table.table_name,
                Var.STATE_MACHINE_ARN: state_machine.state_machine_arn,
                Var.TDEV_DEFAULT_MODEL: settings.default_model,
                # Field encryption (request texts, API-key metadata) under the field key; CORS allow-list.
                Var.KMS_KEY_ID: (field_key or key).key_arn,
                Var.TDEV_CORS_ORIGINS: ",".join(settings.cors_origins),
                # The platform's API signing secret (signs cursors; rotated by SecretRotation below), by its
                # name, which the data stack fixes (a name parsed out of the imported ARN is not a string
                # CloudFormation can check).
                **(
                    {Var.TDEV_API_SIGNING_SECRET: platform_secret_name(settings.prefix, API_SIGNING)}
                    if api_signing_secret
                    else {}
                ),
            },
            timeout=Duration.seconds(29),  # API Gateway's integration timeout
            network=network,
        )
        self.function = handler.function
        grant_table_data_access(table, key, self.function, "api")
        grant_configuration(self.function, settings, "api")  # reads and changes /t-developer/<env>/...
        flags.grant(self.function, "api")  # reads, versions and deploys the feature flags (AppConfig)
        if field_key is not None:
            grant_field_encryption(field_key, self.function)
        if api_signing_secret is not None:
            from stacks.secrets import SecretRotation, grant_secret_read

            grant_secret_read(api_signing_secret, key, self.function)
            self.rotation = SecretRotation(
                self,
                "ApiSigningRotation",
                settings=settings,
                layers=layers,
                log_key=key,
                secret=api_signing_secret,
            )
        state_machine.grant_start_execution(self.function)
        # The kill switch (POST /v1/executions/{id}/cancel): stop this workflow's executions, nothing else.
        state_machine.grant_execution(self.function, "states:StopExecution")
        acknowledge(
            self.function.role,  # type: ignore[arg-type]
            _executions_finding(self, state_machine),
            "StopExecution on this state machine's executions only: their names are the execution ids, "
            "known at run time (the kill switch).",
        )
        # CDK writes that grant's execution ARN as Fn::Split of the machine ARN the orchestration stack
        # publishes (Fn::GetStackOutput, a string); cfn-lint's schema does not list Fn::GetStackOutput
        # among Fn::Split's string-valued arguments (E1022). Ignored on this one policy, for that rule only.
        policy = self.function.role.node.try_find_child("DefaultPolicy")  # type: ignore[union-attr]
        if policy is not None:
            policy.node.default_child.add_metadata(  # type: ignore[union-attr]
                "cfn-lint", {"config": {"ignore_checks": ["E1022"]}}
            )

        # The Lambda authorizer: validates JWTs of the issuer (JWKS, revocation) and API keys.
        authorizer = TdevFunction(
            self,
            "AuthorizerFunction",
            name="authorizer",
            settings=settings,
            layers=layers,
            log_key=key,
            environment={
                Var.TABLE_NAME: table.table_name,
                Var.KMS_KEY_ID: key.key_arn,
                **token_environment(token_issuer, token_audience, roles_claim, token_use),
            },
            timeout=Duration.seconds(10),
            network=network,  # revocations are looked up in Redis first
        )
        self.authorizer_function = authorizer.function
        # Read-only: revocations, disabled principals and API-key items (GetItem), and their key.
        self.authorizer_function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadSecurityItems", actions=["dynamodb:GetItem"], resources=[table.table_arn]
            )
        )
        self.authorizer_function.add_to_role_policy(
            iam.PolicyStatement(
                sid="UseTableKey", actions=["kms:Decrypt", "kms:DescribeKey"], resources=[key.key_arn]
            )
        )
        # No result caching: a revoked token or key must stop working at once, and either header may be used.
        self.authorizer = apigw.RequestAuthorizer(
            self,
            "Authorizer",
            handler=authorizer.alias,  # the `live` alias, like every caller (stacks/constructs/deployment.py)
            identity_sources=[],
            results_cache_ttl=Duration.seconds(0),
        )

        # The REST API, one resource per route, logged, traced and throttled.
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=settings.log_retention,
            encryption_key=key,
            removal_policy=settings.removal_policy,
        )
        self.api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"t-developer-{settings.name}",
            description="T-Developer: submit requests, follow executions, list agents",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The artifacts zip: answered in base64, sent as bytes to clients that accept application/zip.
            binary_media_types=["application/zip"],
            # Usage plans meter the key the authorizer names (usageIdentifierKey), never a client header.
            api_key_source_type=apigw.ApiKeySourceType.AUTHORIZER,
            # API Gateway writes execution logs through one role per account and region (see below); it is
            # kept when this stack goes, since other APIs in the account may rely on it.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=settings.name,
                throttling_rate_limit=settings.api_throttle_rate_limit,
                throttling_burst_limit=settings.api_throttle_burst_limit,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # bodies may hold secrets: never log them
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
            ),
        )
        validator = self.api.add_request_validator(
            "RequestValidator",
            # Required path parameters are checked here. No body model is attached on purpose: bodies are
            # validated by the handler's pydantic models, the single source of truth and of the error format.
            validate_request_parameters=True,
            validate_request_body=True,
        )
        # The `live` alias: a new version takes the API's traffic only as CodeDeploy shifts it.
        integration = apigw.LambdaIntegration(handler.alias, allow_test_invoke=False)
        for method, path in ROUTES:
            resource = self.api.root.resource_for_path(path)
            parameters = {f"method.request.header.{h}": False for h in OPTIONAL_HEADERS}
            parameters.update({f"method.request.path.{p}": True for p in _path_parameters(path)})
            public = (method, path) in PUBLIC_ROUTES
            api_method = resource.add_method(
                method,
                integration,
                request_validator=validator,
                request_parameters=parameters,
                authorizer=None if public else self.authorizer,
                authorization_type=apigw.AuthorizationType.NONE if public else apigw.AuthorizationType.CUSTOM,
                api_key_required=not public,  # the authorizer always names one: see _add_usage_plans
            )
            if public:
                acknowledge(
                    api_method,
                    "AwsSolutions-APIG4",
                    "Public by design (tdev.security.routes): the health check (load balancers, uptime "
                    "probes) and the API's own description (OpenAPI document, docs page); no data in them.",
                )
                acknowledge(
                    api_method,
                    "AwsSolutions-COG4",
                    "Public by design (tdev.security.routes): the health check and the API's description "
                    "need no authorizer.",
                )
            else:
                acknowledge(
                    api_method,
                    "AwsSolutions-COG4",
                    "A Lambda authorizer validates the Cognito (or OIDC) JWTs itself - algorithm, JWKS, "
                    "issuer, audience, expiry - and adds what a Cognito authorizer cannot: API keys and "
                    "revocation by jti.",
                )
        for response_type, (status, error, message) in GATEWAY_RESPONSES.items():
            self.api.add_gateway_response(
                f"{response_type.title().replace('_', '')}Response",
                type=getattr(apigw.ResponseType, response_type),
                status_code=status,
                response_headers={name: f"'{value}'" for name, value in SECURITY_HEADERS.items()},
                templates={"application/json": json.dumps({"error": error, "message": message})},
            )
        self.api_url = self.api.url

        self._add_usage_plans(settings)
        self._own_execution_log_group(settings, key)
        if settings.api_waf:
            self._protect_with_waf(settings)
        else:
            acknowledge(
                self.api.deployment_stage,
                "AwsSolutions-APIG3",
                f"No WAF web ACL in {settings.name} (cost); stage throttling limits request rates. "
                "staging and prod attach one (settings.api_waf).",
            )

        server_errors = cloudwatch.Alarm(
            self,
            "ServerErrorsAlarm",
            metric=self.api.metric_server_error(period=Duration.minutes(5)),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="The API answered with 5XX errors",
        )
        server_errors.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))
        self._alarm_on_latency_and_error_rate(alarm_topic)
        CfnOutput(self, "ApiUrl", value=self.api.url)

    def _alarm_on_latency_and_error_rate(self, topic: sns.ITopic) -> None:
        """The spec's service objectives (1.15.4): p99 latency over 1 s, or more than 5 % of the requests
        answered 5XX, for 15 minutes. The 5XX alarm above fires on any server error; these two say the
        service as a whole is degraded."""
        period = Duration.minutes(5)
        latency = cloudwatch.Alarm(
            self,
            "LatencyP99Alarm",
            metric=self.api.metric_latency(period=period, statistic="p99"),
            threshold=API_P99_LATENCY_MS,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"The API's p99 latency stayed over {API_P99_LATENCY_MS} ms for 15 minutes",
        )
        error_rate = cloudwatch.Alarm(
            self,
            "ErrorRateAlarm",
            metric=cloudwatch.MathExpression(
                # Quiet periods (no requests) count as healthy, not as a division by zero.
                expression="IF(requests > 0, 100 * errors / requests, 0)",
                using_metrics={
                    "errors": self.api.metric_server_error(period=period, statistic="Sum"),
                    "requests": self.api.metric_count(period=period, statistic="Sum"),
                },
                label="API 5XX error rate (%)",
                period=period,
            ),
            threshold=API_ERROR_RATE_PERCENT,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"Over {API_ERROR_RATE_PERCENT}% of API requests answered 5XX for 15 minutes",
        )
        for alarm in (latency, error_rate):
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))

    def _add_usage_plans(self, settings: EnvironmentSettings) -> None:
        """Usage plans (tdev.security.usageplans): one for machine clients, where every API key created
        through the API gets its own API Gateway key (throttle and daily quota per key), and one for
        interactive users, who share one key (their per-user limits are the application limiter's)."""
        stage = apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)
        self.interactive_key = apigw.ApiKey(
            self,
            "InteractiveKey",
            api_key_name=f"t-developer-{settings.name}-interactive",
            description="Shared usage-plan key the authorizer names for JWT users (authenticates nothing)",
            enabled=True,
        )
        interactive = self.api.add_usage_plan(
            "InteractivePlan",
            name=f"t-developer-{settings.name}-interactive",
            description="Users signed in with a JWT, all together",
            throttle=apigw.ThrottleSettings(
                rate_limit=settings.api_throttle_rate_limit, burst_limit=settings.api_throttle_burst_limit
            ),
            api_stages=[stage],
        )
        interactive.add_api_key(self.interactive_key)
        self.machine_plan_name = f"t-developer-{settings.name}-machine-clients"
        self.api.add_usage_plan(
            "MachinePlan",
            name=self.machine_plan_name,
            description="API keys created through POST /v1/api-keys, each metered on its own",
            throttle=apigw.ThrottleSettings(
                rate_limit=settings.usage_plan_rate_limit, burst_limit=settings.usage_plan_burst_limit
            ),
            quota=apigw.QuotaSettings(limit=settings.usage_plan_daily_quota, period=apigw.Period.DAY),
            api_stages=[stage],
        )

        # The authorizer reads the interactive key's value (once per container) to name JWT users.
        self.authorizer_function.add_environment(Var.TDEV_INTERACTIVE_API_KEY_ID, self.interactive_key.key_id)
        apikeys = f"arn:{self.partition}:apigateway:{self.region}::/apikeys"
        self.authorizer_function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadInteractiveKey",
                actions=["apigateway:GET"],
                resources=[f"{apikeys}/{self.interactive_key.key_id}"],
            )
        )
        # The API function registers each new API key in the machine plan, found by name: passing its id
        # would make the function depend on the stage, which depends on the function (a cycle). Keys it
        # creates carry the environment's tag, and it may only change or delete keys that carry it.
        self.function.add_environment(Var.TDEV_USAGE_PLAN_NAME, self.machine_plan_name)
        env_tag = f"aws:ResourceTag/{ENV_TAG}"
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="FindUsagePlans",
                actions=["apigateway:GET"],
                resources=[f"arn:{self.partition}:apigateway:{self.region}::/usageplans"],
            )
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="CreateTaggedApiKeys",
                actions=["apigateway:POST"],
                resources=[apikeys],
                conditions={"StringEquals": {f"aws:RequestTag/{ENV_TAG}": settings.name}},
            )
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ChangeOwnApiKeys",
                actions=["apigateway:PATCH", "apigateway:DELETE"],
                resources=[f"{apikeys}/*"],
                conditions={"StringEquals": {env_tag: settings.name}},
            )
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="AttachKeysToPlans",
                actions=["apigateway:POST", "apigateway:DELETE"],
                resources=[
                    f"arn:{self.partition}:apigateway:{self.region}::/usageplans/*/keys",
                    f"arn:{self.partition}:apigateway:{self.region}::/usageplans/*/keys/*",
                ],
            )
        )
        reasons = {
            "/apikeys/*": "API keys are created at run time, so their ids are unknown here; the statement "
            "is conditioned on this environment's tag, so only keys this function created can change.",
            "/usageplans/*/keys": "The machine plan's id cannot be named here without a dependency cycle "
            "(plan -> stage -> deployment -> method -> this function); the function finds it by name.",
            "/usageplans/*/keys/*": "Detaching a key it failed to store, from the plan found by name (the "
            "plan id cannot be named here: see /usageplans/*/keys).",
        }
        gateway_arn = "arn:{partition}:apigateway:{region}::"
        for path, reason in reasons.items():
            finding = as_nag_prints(self, f"AwsSolutions-IAM5[Resource::{gateway_arn}{path}]")
            acknowledge(self.function.role, finding, reason)  # type: ignore[arg-type]

    def _own_execution_log_group(self, settings: EnvironmentSettings, key: kms.IKey) -> None:
        """API Gateway creates the execution log group on first use, unencrypted and kept forever; create it
        first, under the name API Gateway uses, with our retention and key."""
        execution_logs = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{settings.name}",
            retention=settings.log_retention,
            encryption_key=key,
            removal_policy=settings.removal_policy,
        )
        self.api.deployment_stage.node.add_dependency(execution_logs)
        # The account-level CloudWatch role that API Gateway creates serves every REST API in this account
        # and region, so it keeps AWS's managed policy for it rather than one scoped to this API.
        acknowledge(
            self.api,
            # CDK renders AWS managed policy ARNs with the AWS::Partition pseudo parameter in every env.
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's CloudWatch role is one per account and region, shared by every REST API there; "
            "AWS's managed AmazonAPIGatewayPushToCloudWatchLogs policy is the documented policy for it.",
        )

    def _protect_with_waf(self, settings: EnvironmentSettings) -> None:
        """AWS managed rules (common exploits, known bad inputs) and a per-IP rate limit before throttling."""

        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
            )

        def managed(priority: int, name: str, count_only: Sequence[str] = ()) -> wafv2.CfnWebACL.RuleProperty:
            return wafv2.CfnWebACL.RuleProperty(
                name=name,
                priority=priority,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS",
                        name=name,
                        rule_action_overrides=[
                            wafv2.CfnWebACL.RuleActionOverrideProperty(
                                name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                            )
                            for rule in count_only
                        ]
                        or None,
                    )
                ),
                visibility_config=visibility(name),
            )

        web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility(f"{settings.prefix}-api"),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="RateLimitPerIp",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            aggregate_key_type="IP", limit=1000
                        )
                    ),
                    visibility_config=visibility("RateLimitPerIp"),
                ),
                # Request texts may be up to 20,000 characters (tdev.models.MAX_REQUEST_CHARS), beyond the
                # common rule set's 8 KB body limit: count those instead of blocking them.
                managed(1, "AWSManagedRulesCommonRuleSet", count_only=["SizeRestrictions_BODY"]),
                managed(2, "AWSManagedRulesKnownBadInputsRuleSet"),
            ],
        )
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.api.deployment_stage.stage_arn,
            web_acl_arn=web_acl.attr_arn,
        )


def _path_parameters(path: str) -> list[str]:
    return [
        segment[1:-1].rstrip("+")  # {path+}: a greedy path parameter named `path`
        for segment in path.split("/")
        if segment.startswith("{") and segment.endswith("}")
    ]
