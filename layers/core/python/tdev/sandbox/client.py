"""Where the tests run: the dedicated sandbox function when SANDBOX_FUNCTION_NAME is set (deployed and the
local runtime), else a sandboxed subprocess of this process (unit tests, a bare `tdev` library use).

The sandbox function gets the files in its payload and nothing else: its role has no data permissions.
"""

from __future__ import annotations

import json

from tdev import aws
from tdev.errors import ConfigurationError, TransientError
from tdev.sandbox import Limits, TestReport, run_tests
from tdev.settings import get_settings

DEFAULT_LIMITS = Limits()


def run_project_tests(files: dict[str, str], limits: Limits = DEFAULT_LIMITS) -> TestReport:
    name = get_settings().sandbox_function_name
    if not name:
        return run_tests(files, limits)
    response = aws.slow_client("lambda", limits.timeout_seconds + 30).invoke(
        FunctionName=name,
        Payload=json.dumps({"files": files, "timeout_seconds": limits.timeout_seconds}).encode(),
    )
    payload = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        message = f"the test sandbox failed: {payload.get('errorMessage', 'unknown error')}"
        if payload.get("errorType") == "ConfigurationError":  # retrying would not help
            raise ConfigurationError(message)
        raise TransientError(message)  # e.g. the sandbox ran out of memory or time
    return TestReport.from_dict(payload)
