"""The local emulation fails where AWS would: payload, item and timeout limits, with AWS's error names.

Step Functions' 256 KB state payload and DynamoDB's 400 KB item are enforced by moto itself (proved here
through our own code paths); Lambda's 6 MB synchronous payloads and API Gateway's 10 MB payload and
29 s integration timeout are enforced by the local runtime (`tdev_cli.runtime`) and `tdev serve`.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from http.server import ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tdev_cli.runtime import (
    API_GATEWAY_PAYLOAD_BYTES,
    LAMBDA_SYNC_PAYLOAD_BYTES,
    RequestEntityTooLargeException,
    ResponseSizeTooLarge,
)

REQUEST = "Design and implement a REST API for todo items, with unit tests"


def test_dynamodb_refuses_a_task_result_over_400_kb(runtime: Any) -> None:
    from tdev import container
    from tdev.models import AgentResult, TaskStatus

    result = AgentResult(
        task_id="design",
        agent="DesignAgent",
        model="offline:tdev-offline-1",
        status=TaskStatus.SUCCEEDED,
        output="x" * 410_000,
    )
    with pytest.raises(ClientError) as refused:
        container.executions().save_result(str(uuid.uuid4()), result)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Item size has exceeded the maximum allowed size" in refused.value.response["Error"]["Message"]


def test_a_task_result_over_256_kb_fails_the_execution_with_states_data_limit_exceeded(runtime: Any) -> None:
    original = runtime.invoke

    def oversized_agent(name: str, event: dict[str, Any]) -> Any:
        answer = original(name, event)
        if name == "run_agent":
            return {
                **answer,
                "padding": "x" * (256 * 1024),
            }  # what an agent returning its output inline would do
        return answer

    runtime.invoke = oversized_agent
    execution_id = runtime.submit(REQUEST)
    deadline = time.monotonic() + 120
    while runtime.workflow_status(execution_id) == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    arn = f"{runtime.state_machine_arn.replace(':stateMachine:', ':execution:')}:{execution_id}"
    described = sfn.describe_execution(executionArn=arn)
    assert described["status"] == "FAILED"
    # A terminal error: States.ALL catchers do not catch it (no compensation ran), as in AWS.
    assert described["error"] == "States.DataLimitExceeded"
    assert ("compensate", "ok") not in runtime.invocations


def test_lambda_refuses_a_synchronous_request_over_6_mb(runtime: Any) -> None:
    event = {"execution_id": "e", "padding": "x" * LAMBDA_SYNC_PAYLOAD_BYTES}
    with pytest.raises(RequestEntityTooLargeException, match="too large for the RequestResponse"):
        runtime.invoke("plan_request", event)


def test_a_response_over_6_mb_is_a_function_error_as_lambda_reports_it(
    runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.plan_request import handler

    monkeypatch.setattr(
        handler, "lambda_handler", lambda event, context: {"padding": "x" * LAMBDA_SYNC_PAYLOAD_BYTES}
    )
    with pytest.raises(ResponseSizeTooLarge):
        runtime.invoke("plan_request", {})
    # Through the Lambda API (as Step Functions calls it): a function error of Lambda's type.
    answer = boto3.client("lambda", region_name="us-east-1").invoke(
        FunctionName="plan_request", Payload=b"{}"
    )
    assert answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "Function.ResponseSizeTooLarge"
    assert "Response payload size exceeded maximum allowed payload size" in error["errorMessage"]


def test_api_gateway_answers_413_to_a_body_over_10_mb(runtime: Any) -> None:
    status, body = runtime.api("POST", "/v1/requests", raw_body="x" * (API_GATEWAY_PAYLOAD_BYTES + 1))
    assert (status, body) == (413, {"message": "Request Too Long"})
    assert not runtime.invocations  # neither the authorizer nor the function ran


def test_a_body_that_fits_the_gateway_but_not_lambda_fails_the_integration(runtime: Any) -> None:
    body = json.dumps({"request": "x" * (LAMBDA_SYNC_PAYLOAD_BYTES + 1)})
    status, answer = runtime.api("POST", "/v1/requests", raw_body=body)
    assert (status, answer) == (502, {"message": "Internal server error"})


def test_api_gateway_answers_504_when_the_integration_outlasts_its_timeout(
    runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.api import handler

    original = handler.lambda_handler

    def slow(event: dict[str, Any], context: Any) -> Any:
        time.sleep(0.5)
        return original(event, context)

    monkeypatch.setattr(handler, "lambda_handler", slow)
    runtime.api_timeout_seconds = 0.2  # API Gateway's 29 s, shortened for the test
    assert runtime.api("GET", "/v1/agents") == (504, {"message": "Endpoint request timed out"})
    runtime.api_timeout_seconds = 29.0
    assert runtime.api("GET", "/v1/agents")[0] == 200


def test_waiting_for_another_invocation_is_not_the_integration_timing_out(runtime: Any) -> None:
    # Deployed, each invocation has its own container; here they take turns, and the turn is not
    # the function's run time (under load the wait gave `tdev chaos` timeouts that no seed decided).
    assert runtime.api("GET", "/health")[0] == 200  # warm: the timed call below is a quick one
    runtime.api_timeout_seconds = 2.0
    held, release = threading.Event(), threading.Event()

    def busy_function() -> None:
        with runtime._invocation_lock:
            held.set()
            release.wait(10)

    worker = threading.Thread(target=busy_function)
    worker.start()
    held.wait(5)
    threading.Timer(4.0, release.set).start()
    try:  # /health: no authorizer ahead of the function, the API call itself waits its turn
        assert runtime.api("GET", "/health")[0] == 200
    finally:
        release.set()
        worker.join()
        runtime.api_timeout_seconds = 29.0


def test_tdev_serve_answers_413_like_api_gateway_before_reading_the_body(runtime: Any) -> None:
    from tdev_cli.serve import make_handler

    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(runtime, API_GATEWAY_PAYLOAD_BYTES))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        connection.putrequest("POST", "/v1/requests")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(API_GATEWAY_PAYLOAD_BYTES + 1))
        connection.endheaders()  # the body is never sent: the gateway refuses on the declared length
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read()) == {"message": "Request Too Long"}
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
