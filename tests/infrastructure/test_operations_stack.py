"""The operations dashboard (stacks/dashboards.py) as synthesized: its six views, every alarm of the
environment in its alerts view, every function's logs in its errors view, and no cross-stack export."""

from __future__ import annotations

import json
from typing import Any

VIEWS = ("Overview", "Agent performance", "Health", "Latest errors", "Alerts", "Cost")


def _body(dev: Any) -> tuple[dict[str, Any], list[Any]]:
    """The dashboard's body as JSON, with every token (a reference to another stack) as a placeholder."""
    template = dev.template_json(dev.stacks.operations)
    (dashboard,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    tokens = [p for p in parts if not isinstance(p, str)]
    text = "".join(p if isinstance(p, str) else "TOKEN" for p in parts)
    return json.loads(text), tokens


def test_the_dashboard_has_the_six_views_in_order(dev: Any) -> None:
    dev.template(dev.stacks.operations).has_resource_properties(
        "AWS::CloudWatch::Dashboard", {"DashboardName": "tdev-dev-operations"}
    )
    body, _ = _body(dev)
    headings = [
        w["properties"]["markdown"].splitlines()[0].removeprefix("## ")
        for w in body["widgets"]
        if w["type"] == "text"
    ]
    assert headings == list(VIEWS)
    assert all(w["x"] + w["width"] <= 24 for w in body["widgets"])  # inside the grid


def test_every_alarm_of_the_environment_is_in_the_alerts_view(dev: Any) -> None:
    body, _ = _body(dev)
    widgets = [w for w in body["widgets"] if w["type"] == "alarm"]
    alarms = sum(
        1
        for stack in dev.stacks.all
        for r in dev.template_json(stack)["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    )
    shown = [len(w["properties"]["alarms"]) for w in widgets]
    assert alarms > 20 and sum(shown) == alarms
    assert all(n <= 100 for n in shown)  # CloudWatch's limit for one alarm status widget
    assert len(widgets) == -(-alarms // 100)  # as few widgets as that limit allows


def test_past_a_hundred_alarms_the_alerts_view_takes_another_widget() -> None:
    from aws_cdk import App, Stack
    from aws_cdk import aws_cloudwatch as cloudwatch

    from stacks.dashboards import alarm_widgets

    stack = Stack(App(), "Alarms")
    metric = cloudwatch.Metric(namespace="TDeveloper", metric_name="M")
    alarms = [
        cloudwatch.Alarm(stack, f"A{i}", metric=metric, threshold=1, evaluation_periods=1) for i in range(150)
    ]
    widgets = [stack.resolve(w.to_json())[0]["properties"] for w in alarm_widgets(alarms)]
    assert [(w["title"], len(w["alarms"])) for w in widgets] == [
        ("Alarms (1 of 2)", 100),
        ("Alarms (2 of 2)", 50),
    ]
    assert [
        w["title"] for w in (stack.resolve(x.to_json())[0]["properties"] for x in alarm_widgets(alarms[:3]))
    ] == ["Alarms"]


def test_the_errors_view_queries_every_functions_logs_for_errors(dev: Any) -> None:
    body, _ = _body(dev)
    (query,) = [w for w in body["widgets"] if w["type"] == "log"]
    functions = sum(
        1
        for stack in dev.stacks.all
        for r in dev.template_json(stack)["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and "POWERTOOLS_SERVICE_NAME" in json.dumps(r)
    )
    assert query["properties"]["query"].count("SOURCE") == functions
    assert 'filter level = "ERROR"' in query["properties"]["query"]


def test_cost_and_health_read_this_environment_only_and_nothing_is_exported(dev: Any) -> None:
    body, _ = _body(dev)
    searches = [
        m[0]["expression"]
        for w in body["widgets"]
        if w["type"] == "metric"
        for m in w["properties"]["metrics"]
        if isinstance(m[0], dict) and "expression" in m[0] and "AWS/" in m[0]["expression"]
    ]
    assert searches and all('"tdev-dev' in e for e in searches)
    cost = next(w for w in body["widgets"] if w["properties"].get("title", "").startswith("Cost"))
    labels = [m[0]["label"] for m in cost["properties"]["metrics"]]
    assert "LLM (USD), monthly projection" in labels and "Lambda compute (USD), monthly projection" in labels
    # References to other stacks are read from their outputs at deploy time (no Export/ImportValue pair
    # that would pin the other stacks' resources).
    for stack in dev.stacks.all:
        assert "Export" not in json.dumps(dev.template_json(stack).get("Outputs", {})), stack.stack_name
    dev.template(dev.stacks.operations).resource_count_is("AWS::CloudWatch::Dashboard", 1)
