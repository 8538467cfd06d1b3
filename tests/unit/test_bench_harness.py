"""The benchmark harness: statistics, DynamoDB sizing, the AWS call meter, reports and the CLI surface."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import boto3
import pytest
from moto import mock_aws

from tdev.data.schema import create_table_kwargs
from tdev_cli import bench_cmd
from tdev_cli.benchmarks import BENCHMARKS, get, report
from tdev_cli.benchmarks.common import histogram, percentile, summary
from tdev_cli.benchmarks.loadgen import parse_schedule
from tdev_cli.benchmarks.meter import AwsMeter, item_size
from tdev_cli.benchmarks.planning import corpus
from tdev_cli.main import main


def test_percentiles_use_the_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert math.isnan(percentile([], 50))
    stats = summary([2.0, 4.0, 6.0])
    assert (stats["min"], stats["median"], stats["max"], stats["mean"]) == (2.0, 4.0, 6.0, 4.0)
    assert sum(count for _, count in histogram([1, 2, 3, 10], bins=3)) == 4


def test_item_size_follows_the_dynamodb_rules() -> None:
    assert item_size({"pk": {"S": "abc"}}) == 2 + 3
    assert item_size({"n": {"N": "12345"}}) == 1 + 4  # 5 significant digits -> ceil(5/2) + 1
    assert item_size({"ok": {"BOOL": True}}) == 2 + 1
    nested = {"m": {"M": {"a": {"S": "xy"}}}}
    assert item_size(nested) == 1 + 3 + (1 + 1 + 2)
    assert item_size({"l": {"L": [{"S": "ab"}, {"S": "c"}]}}) == 1 + 3 + (1 + 2) + (1 + 1)


def test_every_registered_benchmark_is_a_module_with_name_and_run() -> None:
    for name in BENCHMARKS:
        module = get(name)
        assert name == module.NAME
        assert callable(module.run)  # DESCRIPTION is optional
    with pytest.raises(ValueError, match="unknown benchmark"):
        get("nope")


def test_the_planning_corpus_has_at_least_200_distinct_varied_requests() -> None:
    requests = corpus()
    assert len(set(requests)) == len(requests) >= 200
    assert len({r.split()[0] for r in requests}) >= 8  # many phrasings, not one template


def test_durations_and_schedules_are_parsed_or_refused() -> None:
    assert bench_cmd.parse_duration("90") == 90
    assert bench_cmd.parse_duration("90s") == 90
    assert bench_cmd.parse_duration("5m") == 300
    assert bench_cmd.parse_duration("1h") == 3600
    for bad in ("", "0s", "ten minutes", "-5m"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench_cmd.parse_duration(bad)
    assert parse_schedule("5:10,20:2.5") == [(5.0, 10.0), (20.0, 2.5)]
    with pytest.raises(ValueError):
        parse_schedule("0:10")


def test_bad_bench_arguments_exit_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["bench", "nope"],
        ["bench", "load", "--soak", "forever"],
        ["bench", "load", "--spike", "--stress"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_reports_are_written_as_json_markdown_and_self_contained_html(tmp_path: Path) -> None:
    result: dict[str, Any] = {
        "name": "demo",
        "status": "ok",
        "headline": "demo: 42 things/s",
        "figures": {"rate": 42.0, "nested": {"p99": 1.5}},
        "tables": [{"title": "T", "columns": ["a", "b"], "rows": [["x", 1.0]]}],
        "charts": [
            {
                "title": "line",
                "kind": "line",
                "x_label": "x",
                "y_label": "y",
                "series": {"s": [[0, 1], [1, 3]]},
            },
            {
                "title": "bars",
                "kind": "bar",
                "x_label": "x",
                "y_label": "y",
                "series": {"s": [["a", 2], ["b", 5]]},
            },
        ],
    }
    paths = report.write([result], tmp_path, {"cpu": "test", "cores": 2})
    assert {p.name for p in paths} == {"demo.json", "demo.md", "results.json", "report.md", "report.html"}
    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") == 2 and "<polyline" in page and "<rect" in page
    assert "<script" not in page and "src=" not in page  # nothing loaded from anywhere
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"] * 2  # only the namespace
    for chart in result["charts"]:  # well-formed SVG, also with no data at all
        ElementTree.fromstring(report.svg_chart(chart))
    ElementTree.fromstring(report.svg_chart({"title": "<empty & odd>", "series": {}}))
    markdown = (tmp_path / "demo.md").read_text()
    assert "**demo: 42 things/s**" in markdown and "| nested.p99 | 1.5 |" in markdown


@pytest.fixture
def table() -> Any:
    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1").create_table(**create_table_kwargs("bench-unit"))
        yield "bench-unit"


def test_the_meter_counts_calls_and_capacity_units_from_item_sizes(table: str) -> None:
    meter = AwsMeter()
    with meter.installed():
        client = boto3.client("dynamodb", region_name="us-east-1")
        small = {"PK": {"S": "a"}, "SK": {"S": "1"}, "body": {"S": "x" * 100}}
        client.put_item(TableName=table, Item=small)  # ~108 B -> 1 WRU
        big = {"PK": {"S": "a"}, "SK": {"S": "1"}, "body": {"S": "x" * 5000}}
        client.put_item(TableName=table, Item=big)  # 5 KB -> 5 WRU
        client.get_item(TableName=table, Key={"PK": {"S": "a"}, "SK": {"S": "1"}})  # 5 KB eventual -> 1 RRU
        client.get_item(TableName=table, Key={"PK": {"S": "a"}, "SK": {"S": "1"}}, ConsistentRead=True)  # 2
        client.delete_item(TableName=table, Key={"PK": {"S": "a"}, "SK": {"S": "1"}})  # 5 WRU (size before)
        with meter.ignored():
            client.put_item(TableName=table, Item=small)  # not counted
        with meter.pause():
            client.get_item(TableName=table, Key={"PK": {"S": "a"}, "SK": {"S": "1"}})
    assert meter.calls[("dynamodb", "PutItem")] == 2
    assert meter.calls[("dynamodb", "GetItem")] == 2
    assert meter.calls[("dynamodb", "DeleteItem")] == 1
    assert meter.write_units == 1 + 5 + 5
    assert meter.read_units == 1 + 2
    assert meter.bytes_written == item_size(small) + item_size(big)
    assert meter.by_service() == {"dynamodb": 5}


def test_the_meter_doubles_transactions_and_records_errors(table: str) -> None:
    meter = AwsMeter()
    with meter.installed():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {"PK": {"S": "t"}, "SK": {"S": str(i)}}}}
                for i in range(3)
            ]
        )
        with pytest.raises(client.exceptions.ClientError):
            client.put_item(
                TableName=table, Item={"PK": {"S": "t"}, "SK": {"S": "x"}, "b": {"S": "y" * 410_000}}
            )
    assert meter.write_units == 3 * 2
    assert meter.errors == {"dynamodb.PutItem": 1}


def _step(rate: float, ok_per_s: float, p95: float) -> dict[str, Any]:
    return {"phases": [{"rate": rate}], "throughput_ok_per_s": ok_per_s, "latency_ms": {"p95": p95}}


def test_load_recommendations_flag_slow_p95_saturation_and_memory_growth() -> None:
    from tdev_cli.benchmarks.load import recommendations

    healthy = [_step(1, 1.0, 50), _step(2, 2.0, 60), _step(4, 3.9, 80)]
    assert recommendations(healthy, [[0, 100.0], [1, 101.0], [2, 100.5], [3, 101.0]]) == []
    saturated = [_step(1, 1.0, 50), _step(2, 2.0, 400), _step(4, 2.1, 1500)]
    advice = recommendations(saturated)
    assert len(advice) == 2
    assert advice[0].startswith("p95 is 1,500 ms at 4 req/s")
    assert "degrades by 48% from 2 to 4 req/s" in advice[1]
    leaking = recommendations(healthy, [[t, 100.0 + 10 * t] for t in range(8)])
    assert len(leaking) == 1 and "possible leak" in leaking[0]
