"""The shared Redis: a VPC for the functions and an ElastiCache Serverless (Valkey) cache inside it.

Circuit breakers, rate limits, token revocations, request nonces, session heartbeats and short-term
memory must be shared by every Lambda instance, so they live here. The cache is reachable only from the
functions' security group, over TLS (serverless caches only speak TLS: `rediss://`), encrypted at rest
with the data key. Functions reach AWS APIs and model providers through a NAT gateway; DynamoDB and S3
traffic stays on gateway endpoints (free, and off the NAT's per-GB charge).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks import acknowledge
from stacks.settings import EnvironmentSettings

REDIS_PORT = 6379


@dataclass(frozen=True)
class FunctionNetwork:
    """What a function needs to run next to the cache: where, as whom, and how to reach Redis."""

    vpc: ec2.IVpc
    security_group: ec2.ISecurityGroup
    redis_url: str

    @property
    def subnets(self) -> ec2.SubnetSelection:
        return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)


class CacheStack(Stack):
    """Exposes `.vpc`, `.cache` and `.network` (a FunctionNetwork for TdevFunction)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        key: kms.IKey,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=settings.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(
                    name="functions", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
                ),
            ],
            gateway_endpoints={
                "DynamoDb": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
            },
        )
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=settings.log_retention,
            encryption_key=key,
            removal_policy=settings.removal_policy,
        )
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))

        self.functions_security_group = ec2.SecurityGroup(
            self,
            "FunctionsSecurityGroup",
            vpc=self.vpc,
            description="T-Developer functions: clients of the cache",
            allow_all_outbound=True,
        )
        cache_security_group = ec2.SecurityGroup(
            self,
            "CacheSecurityGroup",
            vpc=self.vpc,
            description="T-Developer cache: Redis from the functions only",
            allow_all_outbound=False,
        )
        cache_security_group.add_ingress_rule(
            self.functions_security_group, ec2.Port.tcp(REDIS_PORT), "Redis (TLS) from the functions"
        )

        self.cache = elasticache.CfnServerlessCache(
            self,
            "Cache",
            engine="valkey",
            major_engine_version="8",
            serverless_cache_name=f"{settings.prefix}-cache",
            description="T-Developer shared state: breakers, rate limits, revocations, nonces, heartbeats",
            kms_key_id=key.key_arn,
            security_group_ids=[cache_security_group.security_group_id],
            subnet_ids=self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids,
            cache_usage_limits=elasticache.CfnServerlessCache.CacheUsageLimitsProperty(
                data_storage=elasticache.CfnServerlessCache.DataStorageProperty(
                    maximum=settings.cache_max_storage_gb, unit="GB"
                ),
            ),
            snapshot_retention_limit=settings.cache_snapshot_retention_days,
        )
        # `cluster=true`: serverless caches speak the cluster protocol; tdev.cache then uses RedisCluster.
        redis_url = (
            f"rediss://{self.cache.attr_endpoint_address}:{self.cache.attr_endpoint_port}/0?cluster=true"
        )
        self.network = FunctionNetwork(self.vpc, self.functions_security_group, redis_url)

        acknowledge(
            self.functions_security_group,
            "AwsSolutions-EC23",
            "No ingress rules at all: the functions' group is only the source the cache group admits.",
        )
        CfnOutput(self, "RedisEndpoint", value=self.cache.attr_endpoint_address)
