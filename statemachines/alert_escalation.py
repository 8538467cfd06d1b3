"""The alert escalation's ASL file and its `${Placeholders}`, filled identically by the CDK stack and the
local runtime (the same idea as statemachines/request_workflow.py). Pure Python: no CDK import."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

DEFINITION_FILE = Path(__file__).resolve().parent / "alert_escalation.asl.json"
ESCALATION_FUNCTION = "alert_escalation"
# The steps that record how an escalation ended: Task states calling the function with this action.
RECORDING_ACTION = "record"
# Where a recording step's own Catch ends (the table refused the outcome after every retry). Nothing
# reconciles it yet: the alert keeps status ESCALATING with its execution ARN, and the execution is FAILED.
UNRECORDED_FAILURE = "EscalationOutcomeNotRecorded"
# Retries of a level whose channels all failed, and of transient errors, before the alert records FAILED.
ESCALATION_TUNING: Mapping[str, str] = {"RetryIntervalSeconds": "5", "MaxNotifyRetries": "3"}


def escalation_substitutions(
    *, function_arn: str, tuning: Mapping[str, str] = ESCALATION_TUNING
) -> dict[str, str]:
    return {"AlertEscalationFunctionArn": function_arn, **tuning}


def escalation_placeholders(definition: str | None = None) -> set[str]:
    text = DEFINITION_FILE.read_text() if definition is None else definition
    return set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text))


def render_escalation(substitutions: Mapping[str, str]) -> str:
    """The ASL text with every placeholder filled, as DefinitionSubstitutions would fill it."""
    text = DEFINITION_FILE.read_text()
    unfilled = escalation_placeholders(text) - set(substitutions)
    if unfilled:
        raise ValueError(f"no value for ASL placeholders: {sorted(unfilled)}")
    for key, value in substitutions.items():
        text = text.replace("${" + key + "}", value)
    json.loads(text)
    return text
