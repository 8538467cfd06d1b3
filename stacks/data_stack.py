"""State: the customer-managed key and the single DynamoDB table, built from `tdev.data.schema`."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from functions.registry import provider_secret_name, secret_providers
from stacks import acknowledge
from stacks.configuration import FlagStore
from stacks.permissions import TABLE_ACTIONS
from stacks.settings import EnvironmentSettings
from tdev.data import schema


def _string_attribute(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class DataStack(Stack):
    """`.key` encrypts the table, the log groups and the alarm topic; `.table` is the single table; `.flags`
    is the feature flags' AppConfig store."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.key = kms.Key(
            self,
            "Key",
            description=f"T-Developer {settings.name}: table, logs and alarm topic",
            alias=f"alias/{settings.prefix}",
            enable_key_rotation=True,
            removal_policy=settings.removal_policy,
        )
        self._let_services_use_the_key()
        # Field encryption (request texts, agent outputs, chat, memory, API-key metadata, checkpoints) has
        # its own key, granted only to the functions that read those texts in clear: a function that may
        # read the table (and so use the table's key) cannot open them.
        self.field_key = kms.Key(
            self,
            "FieldKey",
            description=f"T-Developer {settings.name}: field-level envelope encryption",
            alias=f"alias/{settings.prefix}-fields",
            enable_key_rotation=True,
            removal_policy=settings.removal_policy,
        )

        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=_string_attribute(schema.PARTITION_KEY),
            sort_key=_string_attribute(schema.SORT_KEY),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            time_to_live_attribute=schema.TTL_ATTRIBUTE,
            # New outbox items reach the publisher through the stream (messaging stack).
            stream=dynamodb.StreamViewType(schema.STREAM_VIEW_TYPE),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=settings.point_in_time_recovery
            ),
            deletion_protection=settings.deletion_protection,
            removal_policy=settings.removal_policy,
        )
        for index in schema.GLOBAL_INDEXES:
            self.table.add_global_secondary_index(
                index_name=index.name,
                partition_key=_string_attribute(index.partition_key),
                sort_key=_string_attribute(index.sort_key),
                projection_type=dynamodb.ProjectionType.ALL,
            )

        # One secret per enabled provider that authenticates with an API key (-c providers=...). The stack
        # creates it with a random placeholder; the operator puts the real key (README "Deploying"). Model
        # calls read it through Powertools Parameters (tdev.llm.providers), found by its derived name.
        self.provider_secrets: dict[str, secretsmanager.Secret] = {}
        for provider in secret_providers(settings.providers):
            secret = secretsmanager.Secret(
                self,
                "".join(part.title() for part in provider.split("-")) + "ApiKey",
                secret_name=provider_secret_name(settings.prefix, provider),
                description=f"T-Developer {settings.name}: the {provider} API key (set it after deploying)",
                encryption_key=self.key,
                removal_policy=settings.removal_policy,
            )
            acknowledge(
                secret,
                "AwsSolutions-SMG4",
                f"A {provider} API key is issued in {provider}'s console, not by an API Secrets Manager "
                "could call: it cannot be rotated automatically. Rotate it there and put the new value.",
            )
            self.provider_secrets[provider] = secret

        # The secrets the platform generates and rotates itself (the API signing secret).
        from stacks.secrets import PlatformSecrets

        self.platform_secrets = PlatformSecrets(self, "PlatformSecrets", settings=settings, key=self.key)

        # The feature flags' AppConfig store (tdev.config.flag_store), the product flags' defaults deployed.
        self.flags = FlagStore(self, "Flags", settings=settings)

        if not settings.point_in_time_recovery:
            acknowledge(
                self.table,
                "AwsSolutions-DDB3",
                f"Point-in-time recovery is off in {settings.name} only (disposable data, lower cost); "
                "staging and prod enable it.",
            )

    def _let_services_use_the_key(self) -> None:
        """CloudWatch Logs encrypts our log groups, CloudWatch alarms publish to the encrypted topic."""
        logs_arn = self.format_arn(
            service="logs", resource="log-group", resource_name="*", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": logs_arn}},
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublishToTheEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )


# What DynamoDB needs from the caller to use the table's customer-managed key.
TABLE_KEY_ACTIONS = (
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:DescribeKey",
)


def grant_table_data_access(
    table: dynamodb.ITable, key: kms.IKey, grantee: iam.IGrantable, function: str
) -> None:
    """The item actions `function` uses (stacks.permissions.TABLE_ACTIONS, from recorded calls) on the table
    and its indexes, and the table's key. Written out (not Table.grant_*) so no statement has a wildcard."""
    principal = grantee.grant_principal
    principal.add_to_principal_policy(
        iam.PolicyStatement(
            sid="ReadAndWriteTableData",
            actions=list(TABLE_ACTIONS[function]),
            resources=[
                table.table_arn,
                *(f"{table.table_arn}/index/{i.name}" for i in schema.GLOBAL_INDEXES),
            ],
        )
    )
    principal.add_to_principal_policy(
        iam.PolicyStatement(sid="UseTableKey", actions=list(TABLE_KEY_ACTIONS), resources=[key.key_arn])
    )


FIELD_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


def grant_field_encryption(field_key: kms.IKey, grantee: iam.IGrantable) -> None:
    """Seal and open fields (tdev.crypto envelopes) under the field key: data keys, nothing else."""
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(
            sid="SealAndOpenFields", actions=list(FIELD_KEY_ACTIONS), resources=[field_key.key_arn]
        )
    )
