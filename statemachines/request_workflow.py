"""The request workflow's ASL file and its `${Placeholders}`: filled the same way by the CDK stack and the
local runtime, so the deployed and the emulated state machine cannot drift. Pure Python (no CDK import),
because the local runtime does not install the CDK.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

DEFINITION_FILE = Path(__file__).resolve().parent / "request_workflow.asl.json"

# The functions the workflow calls, in the order it calls them (folder names under functions/).
WORKFLOW_FUNCTIONS = (
    "plan_request",
    "run_agent",
    "run_project_tests",
    "fix_failing_tests",
    "record_task_failure",
    "aggregate_results",
    "compensate",
    "record_compensation_failure",
)
# Steps that record a terminal status (a task's or the request's): every Task state's Catch leads to one.
RECORDING_FUNCTIONS = ("record_task_failure", "compensate", "record_compensation_failure")
# Fail states a Catch may end in although no step recorded the outcome: the scheduled reconciler
# (tdev.orchestration.reconciler) records FAILED for any open execution whose workflow has ended.
RECONCILED_FAILURES = ("OutcomeNotRecorded",)

# Workflow tuning, substituted into the ASL as numbers (the placeholders are unquoted there).
WORKFLOW_TUNING: Mapping[str, str] = {
    "MaxConcurrentTasks": "50",
    "RetryIntervalSeconds": "2",
    "MaxTransientRetries": "3",
    "MaxVerifyIterations": "3",  # test runs of the verify loop (so at most 2 fixes by the code agent)
    # A task over an agent's or a model's capacity (CapacityExhausted) waits and retries: 5 s growing x1.5
    # to at most 60 s, 60 times (about 55 minutes, longer than any lease: tdev.orchestration.capacity).
    "CapacityRetryIntervalSeconds": "5",
    "MaxCapacityRetries": "60",
}


def pascal(function_name: str) -> str:
    """`run_agent` -> `RunAgent`."""
    return "".join(part.capitalize() for part in function_name.split("_"))


def function_arn_placeholder(function_name: str) -> str:
    """`run_agent` -> `RunAgentFunctionArn`, the ASL placeholder for that function's ARN."""
    return f"{pascal(function_name)}FunctionArn"


def workflow_substitutions(
    *, function_arns: Mapping[str, str], tuning: Mapping[str, str] = WORKFLOW_TUNING
) -> dict[str, str]:
    """Every `${Placeholder}` of the ASL file and its value: function ARNs by folder name, tuning.

    No bus: the workflow announces nothing itself; outcomes go to the outbox with the terminal status.
    """
    missing = set(WORKFLOW_FUNCTIONS) - set(function_arns)
    if missing:
        raise ValueError(f"no ARN for workflow functions: {sorted(missing)}")
    return {
        **{function_arn_placeholder(name): function_arns[name] for name in WORKFLOW_FUNCTIONS},
        **tuning,
    }


def workflow_placeholders(definition: str | None = None) -> set[str]:
    """The `${...}` names used in the ASL definition (the file's, unless a text is given)."""
    text = DEFINITION_FILE.read_text() if definition is None else definition
    return set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text))


def render_definition(substitutions: Mapping[str, str]) -> str:
    """The ASL text with every placeholder filled, as Step Functions' DefinitionSubstitutions would."""
    text = DEFINITION_FILE.read_text()
    unfilled = workflow_placeholders(text) - set(substitutions)
    if unfilled:
        raise ValueError(f"no value for ASL placeholders: {sorted(unfilled)}")
    for key, value in substitutions.items():
        text = text.replace("${" + key + "}", value)
    json.loads(text)
    return text
