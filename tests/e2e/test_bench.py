"""Each benchmark's quick mode end to end: the harness measures, reports and fails where it should.

These check that the figures are produced and coherent, never how fast anything is.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tdev_cli.bench_cmd import run_one
from tdev_cli.benchmarks import coldstart, cost, instantiation, load, planning, storage
from tdev_cli.main import main
from tdev_cli.runtime import MESSAGING_FUNCTIONS

pytestmark = pytest.mark.slow


def test_bench_prints_the_headline_last_and_writes_every_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "planning", "--quick", "--out", str(tmp_path)])

    out = capsys.readouterr().out.rstrip().splitlines()
    assert code == 0
    assert out[-1].startswith("planning: ") and "decisions/s" in out[-1] and "p99" in out[-1]
    saved = json.loads((tmp_path / "planning.json").read_text())
    assert saved["headline"] == out[-1] and saved["machine"]["cores"]
    assert saved["figures"]["plans"] == len(planning.corpus()) >= 200
    assert saved["figures"]["decisions"] >= saved["figures"]["plans"]
    for name in ("planning.md", "report.md", "report.html", "results.json"):
        assert (tmp_path / name).stat().st_size > 0


def test_instantiation_measures_every_subject_in_one_harness() -> None:
    result = instantiation.run(quick=True)

    subjects = result["figures"]["subjects"]
    assert set(subjects) == {
        "ours (offline model)",
        "ours (bedrock model)",
        "agno.Agent + 1 tool",
        "agent-squad BedrockLLMAgent",
    }
    for measured in subjects.values():
        assert measured["time_us"]["n"] == 50 and measured["time_us"]["mean"] > 0
        assert measured["memory_kib"]["mean"] > 0  # creating an agent allocates
    assert result["figures"]["time_ratio_ours_over_agno"] > 0
    assert result["headline"].startswith("instantiation: ours ")


def test_coldstart_runs_fresh_interpreters_and_refuses_the_network(tmp_path: Path) -> None:
    result = coldstart.run(quick=True)

    subjects = result["figures"]["subjects"]
    assert set(coldstart.handlers()) <= set(subjects)
    assert {"agent-squad orchestrator", "agno agent"} <= set(subjects)
    for measured in subjects.values():
        assert measured["runs"] == 2 and 0 < measured["init_ms_median"] < measured["process_ms_median"]
        assert measured["package_mib"] > 1
    assert result["figures"]["slowest_handler"] in coldstart.handlers()
    # a subject that tries to reach anything but loopback is refused and reported, not measured
    with pytest.raises(RuntimeError, match="tried to reach the network"):
        coldstart.measure(
            "import socket\ntry:\n    socket.create_connection(('10.255.255.1', 443), timeout=1)\n"
            "except OSError:\n    pass",
            1,
            coldstart.offline_env(),
            [],
        )


def test_cost_counts_one_request_only_and_prices_it(redis_url: str) -> None:
    result = cost.run(quick=True)

    figures = result["figures"]
    assert figures["status"] == "SUCCEEDED" and figures["tasks"] == 5 and figures["levels"] == 4
    assert figures["calls"]["stepfunctions.StartExecution"] == 1
    assert "dynamodb.CreateTable" not in figures["calls"]  # the runtime's set-up is not the request's
    invocations = dict(figures["lambda_invocations"])
    messaging = {name: invocations.pop(name, 0) for name in MESSAGING_FUNCTIONS}
    assert invocations == {
        "api": 2,  # submit + the client's one read of the result
        "authorizer": 2,  # API Gateway asks it before each (no result caching: revocation is immediate)
        "plan_request": 1,
        "run_agent": 5,
        "run_project_tests": 1,  # the verify loop: the generated tests pass on the first run
        "sandbox": 3,  # the test agent, the review and the verify loop each run the tests
        "aggregate_results": 1,
    }
    # The request's events go out through the outbox: accepted, one per task, the outcome
    assert messaging["outbox_publisher"] >= 1 and messaging["notifications_consumer"] == 1
    assert figures["state_transitions"] >= 10
    assert figures["dynamodb_write_units"] > 0 and figures["dynamodb_read_units"] > 0
    assert figures["eventbridge_events_delivered"] == 1 + 5 + 1
    redis_commands = sum(figures["redis_commands"].values())
    assert redis_commands > 0  # the authorizer's revocation and rate-limit checks, the model guards
    priced = figures["priced"]
    assert priced["platform_usd_per_1000"] == pytest.approx(sum(priced["items_usd"].values()) * 1000)
    assert priced["model_usd_per_request"] > 0 and priced["platform_share_of_model"] > 0
    assert priced["items_usd"]["redis"] == pytest.approx(
        redis_commands * cost.prices()["elasticache_serverless_redis_ecpu"]
    )
    assert "per 1,000 requests" in result["headline"] and priced["prices_as_of"] in result["headline"]
    # The model's cost is priced for named profiles, from the prompts the agent runs really sent
    runs = figures["agent_runs"]
    assert len(runs) == invocations["run_agent"] and all(run["calls"] for run in runs)
    profiles = {profile["profile"]: profile for profile in priced["model_profiles"]}
    assert set(profiles) == set(cost.PROFILES)
    for name, profile in profiles.items():
        assert profile["model"] == cost.PROFILES[name] and name in result["headline"]
        assert profile["input_tokens"] == sum(run["calls"][0] for run in runs)
        assert profile["output_tokens"] == cost.OUTPUT_TOKENS_PER_RUN * len(runs)


def test_storage_compares_on_one_table_and_finds_the_item_limit(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = storage.run(quick=True)

    squad = result["figures"]["windowed"]["agent-squad DynamoDbChatStorage"]
    per_turn = squad["bytes_per_turn"]
    # The whole (windowed) conversation is rewritten each turn: it grows until the window is full ...
    full = storage.HISTORY_WINDOW // 2  # turns (two messages each) in the window
    assert len(per_turn) == 20 and per_turn[:full] == sorted(per_turn[:full])
    # ... and then every turn still rewrites a window's worth.
    assert min(per_turn[full:]) >= 0.9 * per_turn[full - 1]
    assert squad["at"]["20"]["write_units_total"] > squad["at"]["5"]["write_units_total"] > 0
    # Untrimmed, the one item keeps growing: every turn writes more than the one before.
    untrimmed = result["figures"]["untrimmed"]["agent-squad DynamoDbChatStorage"]["bytes_per_turn"]
    assert untrimmed == sorted(untrimmed) and untrimmed[-1] > per_turn[-1] * 1.5
    if result["figures"]["ours"] == "not available":
        assert "ours: not available" in result["headline"]
    else:
        ours = result["figures"]["untrimmed"]["ours TableChatStorage"]
        # one item per message: the bytes written per turn do not grow, the reads of the whole history do
        assert max(ours["bytes_per_turn"]) < 2 * min(ours["bytes_per_turn"])
        assert (
            ours["at"]["20"]["read_units_total"]
            > result["figures"]["windowed"]["ours TableChatStorage"]["at"]["20"]["read_units_total"]
        )
    assert "windowed: " in result["headline"] and "| untrimmed: " in result["headline"]
    # with ~100 KB messages the single-item conversation passes 400 KB within a few turns, in both modes
    monkeypatch.setattr(storage, "message_text", lambda turn, role: "x" * 100_000)
    monkeypatch.setattr(storage, "QUICK_CHECKPOINTS", (1, 10))
    limited = storage.run(quick=True)["figures"]
    for mode in storage.MODES:
        squad_limited = limited[mode]["agent-squad DynamoDbChatStorage"]
        assert squad_limited["item_limit_turn"] in (2, 3) and squad_limited["at"]["10"] is None, mode


class _Slow(BaseHTTPRequestHandler):
    """100 ms per request, 500 on /fail; served one at a time (a plain HTTPServer)."""

    def do_GET(self) -> None:
        time.sleep(0.1)
        status = 500 if self.path == "/fail" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def server() -> Iterator[tuple[str, str]]:
    fast = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    serial = HTTPServer(("127.0.0.1", 0), _Slow)
    serial.request_queue_size = 128
    for srv in (fast, serial):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{fast.server_port}", f"http://127.0.0.1:{serial.server_port}"
    for srv in (fast, serial):
        srv.shutdown()
        srv.server_close()


def test_the_load_generator_is_open_loop_and_corrects_for_coordinated_omission(
    server: tuple[str, str],
) -> None:
    concurrent, serial = server
    result = load.run_generator(f"{concurrent}/", [(20, 1)])
    assert result["sent"] == result["ok"] == 20 and result["errors"] == 0
    assert 95 <= result["latency_ms"]["p50"] < 1000

    # 20 requests offered in 1 s to a server that answers one per 100 ms: the generator keeps sending on
    # schedule, so the last ones wait ~1 s; measured from the intended send time, p100 shows that wait.
    queued = load.run_generator(f"{serial}/", [(20, 1)])
    assert queued["ok"] == 20
    assert queued["latency_ms"]["p100"] >= 900
    assert queued["latency_ms"]["p100"] >= queued["service_ms"]["p50"]
    assert sum(t.get("completed", 0) for t in queued["timeline"]) == 20

    failing = load.run_generator(f"{concurrent}/fail", [(10, 1)])
    assert failing["errors"] == 10 and failing["error_rate"] == 1.0
    assert failing["phases"][0]["error_kinds"] == {"HTTP 500": 10}
    assert not load.passes(failing, p99_ms=1000, max_error_rate=0.01)


def test_the_load_generator_refuses_anything_but_loopback() -> None:
    with pytest.raises(RuntimeError, match="loopback"):
        load.run_generator("http://example.com/", [(1, 1)])


def test_the_load_benchmark_runs_against_tdev_serve_or_says_it_is_missing() -> None:
    result = run_one("load", {"quick": True, "mode": "rates"})
    if result["status"] == "unavailable":
        assert "`tdev serve` is missing" in result["headline"]
    else:
        assert result["status"] == "ok", result["headline"]
        steps = result["figures"]["steps"]
        assert len(steps) == 2
        for step in steps:  # never more than offered, never throttled by the per-principal rate limit
            assert step["throughput_per_s"] <= step["phases"][0]["rate"]
            assert "HTTP 429" not in step["phases"][0]["error_kinds"]
            assert step["principals"] >= 1 and step["completed"] + step["timeouts"] == step["sent"]
        assert "errors " in result["headline"]
