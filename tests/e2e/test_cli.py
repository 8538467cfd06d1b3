"""`tdev run` as a user runs it: the whole pipeline, the terminal output and the exit code."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tdev_cli.main import main

pytestmark = pytest.mark.slow

REQUEST = "Design and implement a REST API for todo items, with unit tests and a security review"


def test_run_prints_plan_progress_results_cost_and_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", REQUEST, "--log-dir", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 0
    assert "Plan: 5 tasks in 4 levels" in out
    for task in ("design", "implement", "test", "security-review", "review"):
        assert task in out
    assert "100% of tasks finished" in out
    assert "[offline model tdev-offline-1" in out  # results are shown, and labelled
    assert "tokens:" in out and "cost: $0.000000" in out
    assert out.rstrip().splitlines()[-1] == "status: SUCCEEDED"
    # The functions' JSON logs went to the log file, with the request's correlation id on every line
    log = next(tmp_path.glob("run-*.jsonl")).read_text().splitlines()
    records = [json.loads(line) for line in log if line.startswith("{") and '"level"' in line]
    assert records and len({r["correlation_id"] for r in records}) == 1


def test_run_json_prints_the_final_execution(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "Write unit tests for the todo parser", "--json", "--log-dir", str(tmp_path)])

    view = json.loads(capsys.readouterr().out)
    assert code == 0
    assert view["status"] == "SUCCEEDED" and view["levels"] == [["test"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "ok", "--model", "gpt4"], "provider:model-id"),
        (["run", "hi"], "request"),  # too short: the API's validation answers, naming the field
        (["run", "Write a parser", "--model", "nosuch:model"], "nosuch"),
    ],
)
def test_bad_input_is_a_clear_message_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main([*args, "--log-dir", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 2
    assert message in out and "Traceback" not in out


class FakeBedrock(BaseHTTPRequestHandler):
    """Answers Bedrock's Converse API on 127.0.0.1, so the real client code path runs offline."""

    calls: list[str] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        FakeBedrock.calls.append(self.path)
        text = f"bedrock answer to: {body['messages'][-1]['content'][0]['text'][:40]}"
        payload = json.dumps(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 1000, "outputTokens": 500, "totalTokens": 1500},
                "metrics": {"latencyMs": 12},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def fake_bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeBedrock)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "user-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "user-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    FakeBedrock.calls = []
    yield url
    server.shutdown()


def test_run_on_bedrock_goes_through_the_converse_api(
    fake_bedrock: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", REQUEST, "--model", "bedrock:amazon.nova-lite-v1:0", "--json", "--log-dir", str(tmp_path)]
    )

    view = json.loads(capsys.readouterr().out)
    assert code == 0, view
    assert FakeBedrock.calls == ["/model/amazon.nova-lite-v1%3A0/converse"] * 5
    assert {r["model"] for r in view["results"]} == {"bedrock:amazon.nova-lite-v1:0"}
    assert all(r["output"].startswith("bedrock answer to:") for r in view["results"])
    # 5 calls x (1000 in at $0.00006/1k + 500 out at $0.00024/1k)
    assert view["usage"]["input_tokens"] == 5000 and view["usage"]["output_tokens"] == 2500
    assert view["usage"]["cost_usd"] == pytest.approx(5 * (0.00006 + 0.5 * 0.00024))


def test_openapi_schema_is_generated_from_the_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["openapi"]) == 0

    schema = json.loads(capsys.readouterr().out)
    assert {"/v1/requests", "/v1/executions/{execution_id}", "/v1/agents", "/health"} <= set(schema["paths"])
    request_in = schema["components"]["schemas"]["RequestIn"]
    assert request_in["required"] == ["request"] and request_in["additionalProperties"] is False
    post = schema["paths"]["/v1/requests"]["post"]
    assert "idempotency-key" in {p["name"].lower() for p in post["parameters"]}
