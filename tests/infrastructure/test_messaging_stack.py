"""The messaging stack as synthesized: queues and DLQs as specified, encryption, TLS-only, the outbox
publisher on the table's stream (sending task completions to the FIFO queue itself), consumers with
partial batch responses, rules with DLQs and retries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from aws_cdk.assertions import Match

from stacks.constructs.deployment import ROLLBACK
from tdev.messaging import queues as q

if TYPE_CHECKING:
    from conftest import Synthesized


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def queues_by_name(dev: Synthesized) -> dict[str, dict[str, Any]]:
    found = resources(dev.template_json(dev.stacks.messaging), "AWS::SQS::Queue")
    return {
        v["Properties"]["QueueName"].removeprefix("tdev-dev-"): {"id": k, **v["Properties"]}
        for k, v in found.items()
    }


@pytest.mark.slow
def test_queues_have_the_specified_timeouts_retention_and_dlqs(dev: Synthesized) -> None:
    queues = queues_by_name(dev)
    for spec in q.QUEUES:
        queue, dlq = queues[spec.name], queues[spec.dlq_name]
        assert queue["VisibilityTimeout"] == spec.visibility_seconds
        assert queue["MessageRetentionPeriod"] == spec.retention_seconds
        assert queue["RedrivePolicy"]["maxReceiveCount"] == spec.max_receive_count
        assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq["id"], "Arn"]}
        assert dlq["MessageRetentionPeriod"] == 14 * 86_400
    fifo = queues["agent-execution.fifo"]
    assert fifo["FifoQueue"] is True and fifo["ContentBasedDeduplication"] is True
    assert queues["agent-execution-dlq.fifo"]["FifoQueue"] is True
    assert (
        queues["agent-execution.fifo"]["VisibilityTimeout"],
        queues["project-build"]["VisibilityTimeout"],
    ) == (300, 600)
    assert queues["notifications"]["MessageRetentionPeriod"] == 3600


@pytest.mark.slow
def test_every_queue_is_kms_encrypted_and_refuses_plain_http(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.messaging)
    queues = resources(template, "AWS::SQS::Queue")
    key_id = next(iter(resources(template, "AWS::KMS::Key")))
    assert len(queues) == 2 * len(q.QUEUES) + 2
    for queue in queues.values():
        assert queue["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    protected: set[str] = set()
    for policy in resources(template, "AWS::SQS::QueuePolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                protected.update(ref["Ref"] for ref in policy["Properties"]["Queues"])
    assert protected == set(queues)
    key = resources(template, "AWS::KMS::Key")[key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    assert any(
        s.get("Principal") == {"Service": "events.amazonaws.com"} for s in key["KeyPolicy"]["Statement"]
    )


@pytest.mark.slow
def test_the_outbox_publisher_reads_only_new_outbox_items_from_the_stream(dev: Synthesized) -> None:
    dev.template(dev.stacks.data).has_resource_properties(
        "AWS::DynamoDB::Table", {"StreamSpecification": {"StreamViewType": "NEW_IMAGE"}}
    )
    template = dev.template(dev.stacks.messaging)
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": Match.any_value(),
            "StartingPosition": "TRIM_HORIZON",
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}},
            "FilterCriteria": {
                "Filters": [
                    {
                        "Pattern": Match.serialized_json(
                            {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"entity": {"S": ["OUTBOX"]}}}}
                        )
                    }
                ]
            },
        },
    )
    publisher_policies = [
        p
        for p in resources(dev.template_json(dev.stacks.messaging), "AWS::IAM::Policy").values()
        if any("events:PutEvents" in str(s["Action"]) for s in p["Properties"]["PolicyDocument"]["Statement"])
    ]
    assert len(publisher_policies) == 1


@pytest.mark.slow
def test_consumers_report_partial_batch_failures_and_use_idempotency(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.messaging)
    sqs_mappings = [
        m["Properties"]
        for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
        if "StartingPosition" not in m["Properties"]
    ]
    assert len(sqs_mappings) == 3  # notifications, task activity, progress
    assert all(
        m["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and m["BatchSize"] == 10
        for m in sqs_mappings
    )
    functions = resources(template, "AWS::Lambda::Function")
    for function in functions.values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert {"TABLE_NAME", "EVENT_BUS_NAME", "IDEMPOTENCY_TABLE_NAME"} <= set(variables)
        assert function["Properties"]["Architectures"] == ["arm64"]
    idempotency = resources(template, "AWS::DynamoDB::Table")
    assert [t["Properties"]["TimeToLiveSpecification"]["AttributeName"] for t in idempotency.values()] == [
        "expiration"
    ]


@pytest.mark.slow
def test_rules_route_by_source_type_and_content_to_queues_with_dlq_retries_and_transformers(
    dev: Synthesized,
) -> None:
    rules = resources(dev.template_json(dev.stacks.messaging), "AWS::Events::Rule")
    assert len(rules) == len(q.RULES)
    by_type = {tuple(r["Properties"]["EventPattern"]["detail-type"]): r["Properties"] for r in rules.values()}
    outcomes = by_type[("RequestCompleted", "RequestFailed")]
    assert outcomes["EventPattern"]["source"] == ["t-developer.orchestrator"]
    assert outcomes["EventPattern"]["detail"] == {
        "data": {"status": ["SUCCEEDED", "DEGRADED", "FAILED", "BUDGET_EXCEEDED", "CANCELLED"]}
    }
    for rule in rules.values():
        (target,) = rule["Properties"]["Targets"]
        assert "DeadLetterConfig" in target
        assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 8}
        name = rule["Properties"]["Description"].split(":")[0]
        if next(r for r in q.RULES if r.name == name).input_template is None:  # progress: the whole event
            assert "InputTransformer" not in target
        else:
            assert "InputTemplate" in target["InputTransformer"]
    progress = by_type[("ExecutionAccepted", "TaskCompleted", "RequestCompleted", "RequestFailed")]
    assert progress["EventPattern"]["source"] == ["t-developer.executions", "t-developer.orchestrator"]
    assert "detail" not in progress["EventPattern"]
    # No rule targets a FIFO queue: a rule's target has one fixed message group (SqsParameters), so task
    # completions are sent by the publisher itself, one group per execution.
    fifo_arns = {name for name in queues_by_name(dev) if name.endswith(".fifo")}
    for rule in rules.values():
        (target,) = rule["Properties"]["Targets"]
        assert "SqsParameters" not in target
        assert not any(name.removesuffix(".fifo") in str(target["Arn"]) for name in fifo_arns)


@pytest.mark.slow
def test_the_publisher_sends_task_completions_to_the_fifo_queue_itself(dev: Synthesized) -> None:
    template = dev.template_json(dev.stacks.messaging)
    fifo_id = queues_by_name(dev)[q.AGENT_EXECUTION.name]["id"]
    functions = resources(template, "AWS::Lambda::Function")
    by_url = {
        name: function["Properties"]["Environment"]["Variables"].get("AGENT_EXECUTION_QUEUE_URL")
        for name, function in functions.items()
    }
    # Only the publisher knows the queue's URL (the consumers receive through their event source mapping).
    (publisher_id,) = [name for name, url in by_url.items() if url is not None]
    assert publisher_id.startswith("OutboxPublisher")
    assert by_url[publisher_id] == {"Ref": fifo_id}
    role = functions[publisher_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    sent_to = [
        resource
        for s in statements
        if "sqs:SendMessage" in s["Action"]
        for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    assert {"Fn::GetAtt": [fifo_id, "Arn"]} in sent_to
    # The route groups by the execution id and deduplicates on the event id.
    assert q.TASK_ACTIVITY.group_by == "executionId" and q.TASK_ACTIVITY.queue == q.AGENT_EXECUTION.name


@pytest.mark.slow
def test_every_dead_letter_queue_has_an_alarm_to_the_topic(dev: Synthesized) -> None:
    alarms = {  # (the functions' rollback alarms are CodeDeploy's: tests/infrastructure/test_deployments.py)
        k: a
        for k, a in resources(dev.template_json(dev.stacks.messaging), "AWS::CloudWatch::Alarm").items()
        if not a["Properties"]["AlarmDescription"].startswith(ROLLBACK)
    }
    assert len(alarms) == len(q.QUEUES) + 2
    for alarm in alarms.values():
        props = alarm["Properties"]
        assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert props["Threshold"] == 0 and props["ComparisonOperator"] == "GreaterThanThreshold"
        assert len(props["AlarmActions"]) == 1
