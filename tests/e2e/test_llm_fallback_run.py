"""`tdev run` where the primary model is throttled and the fallback answers: the whole pipeline, the real
Bedrock client (against a Converse endpoint on 127.0.0.1), the shared Redis breakers, per-task costs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tdev.llm.catalog import cost_usd
from tdev_cli.main import main

pytestmark = pytest.mark.slow

PRIMARY = "bedrock:amazon.nova-pro-v1:0"
FALLBACK = "bedrock:amazon.nova-lite-v1:0"
REQUEST = "Design and implement a REST API for todo items, with unit tests and a security review"


class ThrottledPrimary(BaseHTTPRequestHandler):
    """Converse on 127.0.0.1: the primary model is always throttled, any other model answers."""

    calls: list[str] = []

    def do_POST(self) -> None:
        model_id = unquote(self.path.split("/")[2])
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ThrottledPrimary.calls.append(model_id)
        if f"bedrock:{model_id}" == PRIMARY:
            payload, status = {"message": "Too many requests, please wait before trying again."}, 429
            headers = {"x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/coral/"}
        else:
            text = f"{model_id} answers: {body['messages'][-1]['content'][0]['text'][:30]}"
            payload, status, headers = (
                {
                    "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                    "stopReason": "end_turn",
                    "usage": {"inputTokens": 800, "outputTokens": 300, "totalTokens": 1100},
                    "metrics": {"latencyMs": 9},
                },
                200,
                {},
            )
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ThrottledPrimary)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "user-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "user-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries off: the chain is what is tested
    ThrottledPrimary.calls = []
    yield url
    server.shutdown()


def test_run_falls_back_when_the_primary_is_throttled(
    bedrock: str, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", REQUEST, "--model", PRIMARY, "--fallback", FALLBACK, "--json", "--log-dir", str(tmp_path)]
    )

    view = json.loads(capsys.readouterr().out)
    assert code == 0, view
    assert view["model"] == PRIMARY and view["fallback_models"] == [FALLBACK]
    results = view["results"]
    assert len(results) == 5 and {r["model"] for r in results} == {FALLBACK}
    for result in results:
        assert [(h["model"], h["outcome"]) for h in result["hops"]][-1] == (FALLBACK, "succeeded")
        assert result["hops"][0]["model"] == PRIMARY
        assert result["hops"][0]["outcome"] in {"transient", "breaker_open"}
        assert result["usage"]["cost_usd"] == pytest.approx(cost_usd(FALLBACK, 800, 300))
    # the first five throttles open the shared breaker; after that the primary is not even called
    assert ThrottledPrimary.calls.count("amazon.nova-pro-v1:0") <= 5
    assert ThrottledPrimary.calls.count("amazon.nova-lite-v1:0") == 5
    # per-task cost and model on the execution, and their sum as its total
    assert {t["model"] for t in view["tasks"].values()} == {FALLBACK}
    assert sum(t["usage"]["cost_usd"] for t in view["tasks"].values()) == pytest.approx(
        view["usage"]["cost_usd"]
    )
    assert view["usage"]["cost_usd"] == pytest.approx(5 * cost_usd(FALLBACK, 800, 300))


def test_run_output_shows_the_fallback_and_each_tasks_model_and_cost(
    bedrock: str, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "Write unit tests for the todo parser", "--model", PRIMARY, "--fallback", FALLBACK,
                 "--log-dir", str(tmp_path)])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0, out
    assert f"[fell back from {PRIMARY} (transient)]" in out
    assert "ThrottlingException" not in out  # the provider's error went to the log file, not the terminal
    assert FALLBACK in out and f"${cost_usd(FALLBACK, 800, 300):.6f}" in out
    log = "\n".join(p.read_text() for p in tmp_path.glob("run-*.jsonl"))
    assert '"LLMCalls"' in log and '"outcome": "transient"' in log.replace('":"', '": "')


def test_a_bad_fallback_name_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "Write a parser", "--fallback", "gpt4", "--log-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 2 and "--fallback must look like provider:model-id" in out
