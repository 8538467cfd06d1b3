"""The shared Redis: a VPC for the functions and an ElastiCache Serverless (Valkey) cache inside it.

Circuit breakers, rate limits, token revocations, request nonces, session heartbeats and short-term
memory must be shared by every Lambda instance, so they live here. The cache is reachable only from the
functions' security group, over TLS (serverless caches only speak TLS: `rediss://`), encrypted at rest
with the data key. Functions reach AWS APIs and model providers through a NAT gateway; DynamoDB and S3
traffic stays on gateway endpoints (free, and off the NAT's per-GB charge).

The same Redis holds the read cache (`tdev.caching`): `CacheAlarms` watches its hit rate (the EMF metrics
every function publishes) and the cache's memory. It is built where the alarm topic is (the orchestration
stack, which already depends on this one for the network); it references this stack only by the cache's
name, which the settings fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks import acknowledge
from stacks.settings import EnvironmentSettings
from tdev.caching import METRICS_SERVICE, NAMESPACES

REDIS_PORT = 6379
METRICS_NAMESPACE = "TDeveloper"  # POWERTOOLS_METRICS_NAMESPACE of every function
MIN_HIT_RATE_PERCENT = 50  # below this for 30 minutes, the cache is not paying for itself
MAX_MEMORY_FRACTION = 0.8  # of the cache's storage limit


def cache_name(settings: EnvironmentSettings) -> str:
    return f"{settings.prefix}-cache"


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
            serverless_cache_name=cache_name(settings),
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


class CacheAlarms(Construct):
    """Alarms on the read cache: a falling hit rate (all namespaces together) and memory near the limit.

    Exposes `.hit_rate` and `.memory` (cloudwatch.Alarm), both publishing to `topic`."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, topic: sns.ITopic
    ) -> None:
        super().__init__(scope, construct_id)
        period = Duration.minutes(10)

        def counted(metric_name: str, namespace: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=metric_name,
                dimensions_map={"service": METRICS_SERVICE, "Cache": namespace},
                statistic="Sum",
                period=period,
            )

        using: dict[str, cloudwatch.IMetric] = {}
        for i, namespace in enumerate(NAMESPACES):
            using[f"h{i}"] = counted("CacheHits", namespace)
            using[f"m{i}"] = counted("CacheMisses", namespace)
        hits = " + ".join(f"h{i}" for i in range(len(NAMESPACES)))
        lookups = " + ".join(using)
        hit_rate = cloudwatch.MathExpression(
            # Quiet periods (no lookups) count as healthy, not as a 0 % hit rate.
            expression=f"IF(({lookups}) > 0, 100 * ({hits}) / ({lookups}), 100)",
            using_metrics=using,
            label="Read cache hit rate (%)",
            period=period,
        )
        self.hit_rate = cloudwatch.Alarm(
            self,
            "HitRateAlarm",
            metric=hit_rate,
            threshold=MIN_HIT_RATE_PERCENT,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=(
                f"The read cache's hit rate stayed under {MIN_HIT_RATE_PERCENT}% for 30 minutes: "
                "invalidation storms, evictions or TTLs too short (tdev cache stats shows the counters)"
            ),
        )
        limit_bytes = settings.cache_max_storage_gb * 1024**3
        self.memory = cloudwatch.Alarm(
            self,
            "MemoryAlarm",
            metric=cloudwatch.Metric(
                namespace="AWS/ElastiCache",
                metric_name="BytesUsedForCache",
                dimensions_map={"clusterId": cache_name(settings)},
                statistic="Maximum",
                period=Duration.minutes(5),
            ),
            threshold=int(limit_bytes * MAX_MEMORY_FRACTION),
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=(
                f"The cache uses more than {MAX_MEMORY_FRACTION:.0%} of its "
                f"{settings.cache_max_storage_gb} GB limit: it will throttle writes and evict"
            ),
        )
        for alarm in (self.hit_rate, self.memory):
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
