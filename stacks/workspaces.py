"""Project workspaces and the test sandbox, as infrastructure.

- The workspace bucket: `workspaces/<execution-id>/<path>`, private, TLS only, KMS-encrypted with the
  deployment's key, access-logged, objects expiring after WORKSPACE_RETENTION_DAYS (like checkpoints).
- The sandbox function: runs a project's tests from the files in its payload. It sits in its own VPC
  with isolated subnets only (no internet or NAT gateway, no VPC endpoints) and a security group without
  egress rules, so the tests have no network path anywhere; its role may write its logs and nothing
  else (no table, bucket, key or other function).
Functions that use them get the environment and least-privilege grants through the helpers below.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import acknowledge
from stacks.cache_stack import FunctionNetwork
from stacks.constructs import TdevFunction, TdevLayers
from stacks.settings import EnvironmentSettings
from tdev.environment import Var

WORKSPACE_PREFIX = "workspaces/"
WORKSPACE_RETENTION_DAYS = 7
SANDBOX_FUNCTION = "sandbox"
SANDBOX_TIMEOUT = Duration.seconds(120)
SANDBOX_MEMORY_MB = 1024


def workspace_bucket_name(settings: EnvironmentSettings) -> str:
    """The bucket name, derived (not exported): the API stack uses it without depending on this stack."""
    return f"{settings.prefix}-workspaces-{Aws.ACCOUNT_ID}-{Aws.REGION}"


def grant_workspaces(
    function: lambda_.Function, key: kms.IKey, settings: EnvironmentSettings, *, write: bool
) -> None:
    """List and read (and, with `write`, put) objects under workspaces/, with the key.

    No DeleteObject: no product path removes a workspace file (permissions from evidence)."""
    name = workspace_bucket_name(settings)
    function.add_environment(Var.WORKSPACE_BUCKET, name)
    actions = ["s3:GetObject", *(["s3:PutObject"] if write else [])]
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="WorkspaceObjects",
            actions=actions,
            resources=[f"arn:{Aws.PARTITION}:s3:::{name}/{WORKSPACE_PREFIX}*"],
        )
    )
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="ListWorkspaces",
            actions=["s3:ListBucket"],
            resources=[f"arn:{Aws.PARTITION}:s3:::{name}"],
            conditions={"StringLike": {"s3:prefix": [f"{WORKSPACE_PREFIX}*"]}},
        )
    )
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="WorkspaceKey",
            actions=["kms:Decrypt", *(["kms:GenerateDataKey"] if write else [])],
            resources=[key.key_arn],
        )
    )
    assert function.role is not None
    acknowledge(
        function.role,
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{settings.prefix}-workspaces-"
        "<AWS::AccountId>-<AWS::Region>/workspaces/*]",
        "Workspace object keys are workspaces/<execution id>/<file path>, created at run time: the grant "
        "is limited to that prefix and to the object actions this function uses.",
    )


def serve_artifacts(function: lambda_.Function, key: kms.IKey, settings: EnvironmentSettings) -> None:
    """Let the API read executions' artifacts (list, read, presign) and seed a new request's workspace
    from its base (an earlier execution's files, copied within the bucket, or an uploaded zip)."""
    grant_workspaces(function, key, settings, write=True)


class WorkspaceBucket(Construct):
    """`.bucket`: where the agents' projects live."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # S3 server access logging cannot write SSE-KMS
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=settings.removal_policy,
            auto_delete_objects=False,
        )
        acknowledge(
            access_logs,
            "AwsSolutions-S1",
            "This is the access-log bucket of the workspace bucket; logging it into itself would loop.",
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=workspace_bucket_name(settings),
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="workspaces/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="workspaces-expire-after-7-days",
                    prefix=WORKSPACE_PREFIX,
                    expiration=Duration.days(WORKSPACE_RETENTION_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=settings.removal_policy,
        )


class _IsolatedNetwork(FunctionNetwork):
    """A FunctionNetwork in isolated subnets (no route out); there is no cache here (empty REDIS_URL)."""

    @property
    def subnets(self) -> ec2.SubnetSelection:
        return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)


class TestSandbox(Construct):
    """`.function`: the sandbox function in a VPC with no way out, `.alias` its `live` alias; `.vpc`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        key: kms.IKey,
        layers: TdevLayers,
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            # Nothing uses the default group; CDK's custom resource that empties it would be one more
            # function with a role, for no gain here.
            restrict_default_security_group=False,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="sandbox", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                )
            ],
        )
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=settings.log_retention,
            encryption_key=key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))
        security_group = ec2.SecurityGroup(
            self,
            "NoEgress",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="T-Developer test sandbox: no inbound, no outbound",
        )
        sandbox = TdevFunction(
            self,
            "Function",
            name=SANDBOX_FUNCTION,
            settings=settings,
            layers=layers,
            log_key=key,
            memory_mb=SANDBOX_MEMORY_MB,
            timeout=SANDBOX_TIMEOUT,
            network=_IsolatedNetwork(vpc=self.vpc, security_group=security_group, redis_url=""),
            description="T-Developer test sandbox: runs a project's tests from its payload, no network",
        )
        self.function = sandbox.function
        self.alias = sandbox.alias  # what the workflow's functions invoke (stacks/constructs/deployment.py)
