"""What each function may do, from evidence, and the granted actions no function's own code calls.

`tests/infrastructure/test_permissions_from_evidence.py` records every AWS call each function makes while
the product paths run locally (`tdev_cli.aws_calls`), then checks each synthesized role: every call is
allowed, and every granted action is used by a recorded call or listed in `NOT_CALLED_BY_CODE` with its
reason. `TABLE_ACTIONS` is what that evidence shows each function doing with the table's items.
"""

from __future__ import annotations

# Item actions on the table (and its indexes) per function, as recorded. TransactWriteItems is authorised
# as the per-item actions (Put/Update/Delete/ConditionCheck), so it appears here as those.
TABLE_ACTIONS: dict[str, tuple[str, ...]] = {
    "plan_request": (
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ),
    # (BatchGetItem: the registry's warming at cold start, 100 agents' specs a call)
    "run_agent": ("dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
    # The verify loop: reads the execution and earlier iterations (one partition query), stores its own.
    "run_project_tests": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"),
    # ... and each fix's model calls reserve and settle on the execution's budget (tdev.data.budgets).
    "fix_failing_tests": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"),
    # The failure path's last step: reads the execution, records FAILED with its outbox event (a transaction).
    "record_compensation_failure": (
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ),
    "record_task_failure": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
    # Both read the execution's partition (one query) and record the terminal status with its outbox item.
    "aggregate_results": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"),
    "compensate": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"),
    # Admission reads the user's suspension and the user's and project's month in one BatchGetItem
    # (tdev.data.budgets.check_admission); unsuspending deletes the suspension item.
    "api": (
        "dynamodb:BatchGetItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ),
    "session_sweeper": (
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ),
    "notifications_consumer": ("dynamodb:PutItem", "dynamodb:UpdateItem"),
    "task_activity_consumer": ("dynamodb:PutItem", "dynamodb:UpdateItem"),
    # Alerting: the intake opens or counts on a key's group (a transaction of two puts, or an update);
    # the escalation's steps read the alert and record notifications and the outcome.
    "alert_intake": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
    "alert_escalation": ("dynamodb:GetItem", "dynamodb:UpdateItem"),
    # The progress log: its head read, then the marker, the event and the head in one transaction.
    "progress_consumer": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
    # Live progress (tdev.realtime): $connect reads API keys and revocations and records the connection;
    # subscribe reads the connection, the execution and the caller's access, and replaces its subscription;
    # $disconnect queries the connection's partition and deletes it.
    "websocket": ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"),
    # The pusher: the subscribers (GSI4) and the log (head and events), the send lease and cursor, and a
    # gone connection's partition deleted.
    "push_progress": ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"),
}
# Parameter Store per function (tdev.config: the live configuration), as recorded:
# one GetParametersByPath on /t-developer/<env> per polling interval; the API also writes under it.
PARAMETER_ACTIONS: dict[str, tuple[str, ...]] = {
    "api": ("ssm:DeleteParameters", "ssm:GetParametersByPath", "ssm:PutParameter"),
    "run_agent": ("ssm:GetParametersByPath",),
    "fix_failing_tests": ("ssm:GetParametersByPath",),
    "record_task_failure": ("ssm:GetParametersByPath",),
    # Recovering a session rebuilds its agents on the configured default model.
    "session_sweeper": ("ssm:GetParametersByPath",),
}
# AppConfig per function (tdev.config.flag_store: the feature flags), as recorded: the functions that
# evaluate flags open a configuration session and poll it once per interval; the API also creates a hosted
# configuration version holding every flag and deploys it.
FLAG_READS = ("appconfig:GetLatestConfiguration", "appconfig:StartConfigurationSession")
FLAG_WRITES = ("appconfig:CreateHostedConfigurationVersion", "appconfig:StartDeployment")
FLAG_ACTIONS: dict[str, tuple[str, ...]] = {
    "api": (*FLAG_READS, *FLAG_WRITES),
    "run_agent": FLAG_READS,  # the fallback_chain flag (tdev.llm.fallback.model_chain)
    "fix_failing_tests": FLAG_READS,  # the same, for the fix's model calls
    "run_project_tests": FLAG_READS,  # the verify_loop flag (tdev.orchestration.verify)
    "record_task_failure": FLAG_READS,  # the failed task's model chain, as the fallback_chain flag makes it
}
# What Powertools idempotency does with its own table (DynamoDBPersistenceLayer).
IDEMPOTENCY_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
)

_LAMBDA_LOGS = "Lambda itself writes the function's logs to its log group with the function's role."
_XRAY = "Active tracing: the Lambda runtime sends the trace segments with the function's role."
_TABLE_KEY = (
    "The table is encrypted with this customer-managed key: DynamoDB uses it with the caller's permissions "
    "(kms:ViaService), and tdev.crypto decrypts data keys another container generated (one process caches "
    "every key it made, so locally Decrypt is never called)."
)
_STREAM = "The outbox stream's event source mapping reads the table's stream with the publisher's role."
_QUEUE_MAPPING = (
    "The SQS event source mapping receives, deletes and inspects the queue's messages with this role."
)
_QUEUE_KEY = "The queues are encrypted with the messaging key: receiving (and sending to the DLQ) uses it."

# (function or "*", action pattern) -> why the role holds it although no recorded call of its code uses it.
NOT_CALLED_BY_CODE: dict[tuple[str, str], str] = {
    ("*", "logs:CreateLogStream"): _LAMBDA_LOGS,
    ("*", "logs:PutLogEvents"): _LAMBDA_LOGS,
    ("*", "xray:PutTraceSegments"): _XRAY,
    ("*", "xray:PutTelemetryRecords"): _XRAY,
    **{
        ("*", action): _TABLE_KEY
        for action in (
            "kms:Decrypt",
            "kms:Encrypt",
            "kms:DescribeKey",
            "kms:GenerateDataKey",
            "kms:GenerateDataKey*",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:ReEncryptFrom",
            "kms:ReEncryptTo",
            "kms:ReEncrypt*",
        )
    },
    ("outbox_publisher", "dynamodb:DescribeStream"): _STREAM,
    ("outbox_publisher", "dynamodb:GetRecords"): _STREAM,
    ("outbox_publisher", "dynamodb:GetShardIterator"): _STREAM,
    # The pusher's mapping reads the same stream (new progress events and subscriptions).
    ("push_progress", "dynamodb:DescribeStream"): _STREAM,
    ("push_progress", "dynamodb:GetRecords"): _STREAM,
    ("push_progress", "dynamodb:GetShardIterator"): _STREAM,
    ("run_agent", "sqs:SendMessage"): "tdev.write_behind dead-letters a run's statistics only after every "
    "write to the table failed (tests/unit/test_write_behind.py); the product paths never fail so.",
    # (Its own SendMessage, task completions to agent-execution.fifo, is a recorded call.)
    ("outbox_publisher", "sqs:SendMessage"): "The stream mapping's on-failure destination (the outbox DLQ).",
    ("outbox_publisher", "sqs:GetQueueAttributes"): "The stream mapping checks its on-failure destination.",
    ("outbox_publisher", "sqs:GetQueueUrl"): "Granted with the on-failure destination (CDK's SqsDlq grant).",
    ("outbox_publisher", "kms:*"): _QUEUE_KEY,
    **{
        (consumer, action): _QUEUE_MAPPING
        for consumer in ("notifications_consumer", "task_activity_consumer", "progress_consumer")
        for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
    },
    **{
        (consumer, "sqs:GetQueueUrl"): "Granted with the queue for tdev.messaging.visibility's heartbeat, "
        "which looks the queue up by name when a message takes long."
        for consumer in ("notifications_consumer", "progress_consumer")
    },
    ("alert_escalation", "secretsmanager:GetSecretValue"): "The channels' secret is read once per container "
    "(tdev.alerts.channels); locally every function shares one process, so the intake's read serves the "
    "escalation's steps.",
    (
        "alert_escalation",
        "sns:Publish",
    ): "The email and SMS topics serve the levels TDEV_ALERT_ESCALATION_LEVELS "
    "names; the evidence run acknowledges its high alert after level 1 (webhook and Slack).",
    ("*", "sqs:ChangeMessageVisibility"): "tdev.messaging.visibility extends a long message's visibility "
    "every visibility/2 seconds, and the mapping returns failed messages; no evidence run lasts that long.",
    **{
        (consumer, "dynamodb:GetItem"): "Powertools idempotency reads the stored record of a redelivered "
        "message from the idempotency table."
        for consumer in ("notifications_consumer", "task_activity_consumer", "progress_consumer")
    },
    **{
        (consumer, "dynamodb:DeleteItem"): "Powertools idempotency deletes the in-progress record when the "
        "handler raises, so the retry can run."
        for consumer in ("notifications_consumer", "task_activity_consumer", "progress_consumer")
    },
    ("session_sweeper", "dynamodb:DeleteItem"): "Checkpoint pruning (tdev.sessions.checkpoints) once a "
    "session holds more checkpoints than it keeps; the evidence run's sessions hold fewer.",
    ("session_sweeper", "s3:DeleteObject"): "Checkpoint pruning (tdev.sessions.checkpoints) when a session "
    "holds more checkpoints than it keeps; the evidence run's sessions hold fewer.",
    ("api", "apigateway:DELETE"): "Undoing an API key registration (tdev.security.usageplans.delete): "
    "detach the twin from the plan and delete it when the key item cannot be stored.",
}
