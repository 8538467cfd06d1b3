"""The sessions stack: checkpoint bucket, scheduled sweeper, session alarms; the API can run sessions."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from stacks.constructs.deployment import ROLLBACK
from tests.infrastructure.conftest import Synthesized


def _template(synth: Synthesized) -> Any:
    return synth.template(synth.stacks.sessions)


def _resources(template_json: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template_json["Resources"].items() if v["Type"] == kind}


def test_checkpoint_bucket_is_private_kms_encrypted_tls_only_and_expires_after_7_days(
    dev: Synthesized,
) -> None:
    template = _template(dev)
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {
                        "BucketKeyEnabled": True,
                        "ServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": Match.any_value(),
                        },
                    }
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [Match.object_like({"Prefix": "sessions/", "ExpirationInDays": 7, "Status": "Enabled"})]
                )
            },
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "checkpoints/"}),
        },
    )
    policies = json.dumps(_resources(dev.template_json(dev.stacks.sessions), "AWS::S3::BucketPolicy"))
    assert '"aws:SecureTransport": "false"' in policies


def test_the_sweeper_runs_every_minute_alone_with_the_session_environment(dev: Synthesized) -> None:
    template = _template(dev)
    template.has_resource_properties(
        "AWS::Events::Rule",
        {"ScheduleExpression": "rate(1 minute)", "State": "ENABLED", "Targets": Match.any_value()},
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "handler.lambda_handler",
            "Architectures": ["arm64"],
            "Timeout": 300,
            "ReservedConcurrentExecutions": 1,
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "CHECKPOINT_BUCKET": Match.any_value(),
                        "KMS_KEY_ID": Match.any_value(),
                        "TABLE_NAME": Match.any_value(),
                        "TDEV_EMBEDDINGS": "bedrock",
                        "POWERTOOLS_SERVICE_NAME": "session_sweeper",
                    }
                )
            },
        },
    )


def test_checkpoint_access_is_limited_to_the_sessions_prefix(dev: Synthesized) -> None:
    for stack in (dev.stacks.sessions, dev.stacks.api):
        statements = [
            s
            for policy in _resources(dev.template_json(stack), "AWS::IAM::Policy").values()
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
            if s.get("Sid") == "ReadWriteCheckpoints"
        ]
        assert len(statements) == 1, stack.stack_name
        [statement] = statements
        assert sorted(statement["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
        resource = json.dumps(statement["Resource"])
        assert f"{dev.stacks.sessions.settings.prefix}-checkpoints-" in resource
        assert resource.endswith('/sessions/*"]]}')


def test_the_api_function_knows_the_bucket_and_key(dev: Synthesized) -> None:
    dev.template(dev.stacks.api).has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like(
                    {"CHECKPOINT_BUCKET": Match.any_value(), "KMS_KEY_ID": Match.any_value()}
                )
            }
        },
    )


def test_alarms_on_duration_error_rate_recovery_and_the_sweeper(dev: Synthesized) -> None:
    alarms = {  # (the sweeper's rollback alarms are CodeDeploy's: tests/infrastructure/test_deployments.py)
        k: a
        for k, a in _resources(dev.template_json(dev.stacks.sessions), "AWS::CloudWatch::Alarm").items()
        if not a["Properties"]["AlarmDescription"].startswith(ROLLBACK)
    }
    by_description = {a["Properties"]["AlarmDescription"]: a["Properties"] for a in alarms.values()}
    duration = by_description["A session has been open for more than 7 hours (the limit is 8)"]
    assert duration["MetricName"] == "OldestSessionAge" and duration["Threshold"] == 7 * 3600
    assert duration["Statistic"] == "Maximum"
    error_rate = by_description["More than 5 % of session turns failed in 5 minutes"]
    assert error_rate["Threshold"] == 5
    expressions = [m.get("Expression") for m in error_rate["Metrics"]]
    assert "IF(turns > 0, 100 * errors / turns, 0)" in expressions
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in error_rate["Metrics"] if "MetricStat" in m}
    assert names == {"SessionErrors", "SessionTurns"}
    assert "A session could not be recovered after 3 attempts and was marked failed" in by_description
    assert "The session sweeper raised errors" in by_description
    assert all(a["Properties"]["AlarmActions"] for a in alarms.values())
