"""Reports of benchmark results: JSON, Markdown and one self-contained HTML page with SVG charts.

A result's optional `charts` is a list of
    {"title": str, "kind": "line" | "bar", "x_label": str, "y_label": str,
     "series": {label: [[x, y], ...]}}
where a bar chart's x values are category names (grouped bars, one colour per series) and a line
chart's are numbers. `tables` is a list of {"title", "columns": [...], "rows": [[...], ...]}.
The charts are drawn here as inline SVG: the page loads nothing from anywhere.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
WIDTH, HEIGHT = 720, 340
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 52, 70


def _nice(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1
    step = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(step))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= step), default=step)
    start = math.floor(low / step) * step
    ticks, value = [round(start, 10)], start
    while ticks[-1] < high - step * 1e-9:  # the last tick is at or above the highest value
        value += step
        ticks.append(round(value, 10))
    return ticks


def svg_chart(chart: dict[str, Any]) -> str:
    """One chart as an SVG element."""
    series: dict[str, list[list[Any]]] = chart.get("series", {})
    kind = chart.get("kind", "line")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-size="14">'
        f"{html.escape(str(chart.get('title', '')))}</text>",
    ]
    ys = [float(p[1]) for points in series.values() for p in points if p[1] is not None]
    if not ys:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    y_ticks = _ticks(min(0.0, min(ys)), max(ys))
    y_low, y_high = y_ticks[0], y_ticks[-1]

    def y_pos(y: float) -> float:
        return TOP + plot_h - (y - y_low) / ((y_high - y_low) or 1) * plot_h

    for tick in y_ticks:
        y = y_pos(tick)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_nice(tick)}</text>')
    if kind == "bar":
        categories: list[str] = []
        for points in series.values():
            for point in points:
                if str(point[0]) not in categories:
                    categories.append(str(point[0]))
        group_w = plot_w / max(1, len(categories))
        bar_w = group_w * 0.8 / max(1, len(series))
        for s_index, (_label, points) in enumerate(series.items()):
            for point in points:
                if point[1] is None:
                    continue
                c_index = categories.index(str(point[0]))
                x = LEFT + c_index * group_w + group_w * 0.1 + s_index * bar_w
                top = y_pos(float(point[1]))
                base = y_pos(max(0.0, y_low))
                parts.append(
                    f'<rect x="{x:.1f}" y="{min(top, base):.1f}" width="{bar_w:.1f}" '
                    f'height="{abs(base - top):.1f}" fill="{COLOURS[s_index % len(COLOURS)]}">'
                    f"<title>{html.escape(str(point[0]))}: {_nice(float(point[1]))}</title></rect>"
                )
        step = max(1, math.ceil(len(categories) / 16))
        for c_index, category in enumerate(categories):
            if c_index % step:
                continue
            x = LEFT + (c_index + 0.5) * group_w
            y = TOP + plot_h + 12
            parts.append(
                f'<text x="{x:.1f}" y="{y}" text-anchor="end" transform="rotate(-30 {x:.1f} {y})">'
                f"{html.escape(category[:24])}</text>"
            )
    else:
        xs = [float(p[0]) for points in series.values() for p in points]
        x_ticks = _ticks(min(xs), max(xs))
        x_low, x_high = x_ticks[0], x_ticks[-1]

        def x_pos(x: float) -> float:
            return LEFT + (x - x_low) / ((x_high - x_low) or 1) * plot_w

        for tick in x_ticks:
            x = x_pos(tick)
            parts.append(
                f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{_nice(tick)}</text>'
            )
        for s_index, (_label, points) in enumerate(series.items()):
            colour = COLOURS[s_index % len(COLOURS)]
            coords = " ".join(
                f"{x_pos(float(p[0])):.1f},{y_pos(float(p[1])):.1f}" for p in points if p[1] is not None
            )
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
            if len(points) <= 40:
                for p in points:
                    if p[1] is not None:
                        parts.append(
                            f'<circle cx="{x_pos(float(p[0])):.1f}" cy="{y_pos(float(p[1])):.1f}" r="2.5" '
                            f'fill="{colour}"/>'
                        )
    parts.append(
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#333"/>'
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="#333"/>'
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
        f"{html.escape(str(chart.get('x_label', '')))}</text>"
        f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">'
        f"{html.escape(str(chart.get('y_label', '')))}</text>"
    )
    for s_index, label in enumerate(series):
        x = LEFT + 10 + s_index * 230
        parts.append(
            f'<rect x="{x}" y="28" width="10" height="10" fill="{COLOURS[s_index % len(COLOURS)]}"/>'
            f'<text x="{x + 14}" y="37">{html.escape(str(label)[:34])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return _nice(value) if abs(value) >= 0.001 or value == 0 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def _flat(figures: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flat(value, f"{name}."))
        elif isinstance(value, list):
            rows.append((name, ", ".join(_cell(v) for v in value)))
        else:
            rows.append((name, value))
    return rows


def markdown(result: dict[str, Any], machine: dict[str, Any] | None = None) -> str:
    lines = [f"## {result['name']}", "", f"**{result['headline']}**", ""]
    if result.get("description"):
        lines += [str(result["description"]), ""]
    for table in result.get("tables", []):
        lines += [f"### {table['title']}", "", "| " + " | ".join(table["columns"]) + " |"]
        lines.append("|" + "---|" * len(table["columns"]))
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table["rows"]]
        lines.append("")
    if result.get("figures"):
        lines += ["### Figures", "", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in _flat(result["figures"])]
        lines.append("")
    if result.get("notes"):
        lines += ["### Notes", ""] + [f"- {note}" for note in result["notes"]] + [""]
    if machine:
        lines += [f"Machine: {_machine_line(machine)}", ""]
    return "\n".join(lines)


def _machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gib')} GiB, "
        f"{machine.get('os')}, Python {machine.get('python')}"
    )


def html_page(results: Sequence[dict[str, Any]], machine: dict[str, Any]) -> str:
    body = [
        "<!doctype html><html><head><meta charset='utf-8'><title>T-Developer benchmarks</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}"
        ".headline{font-size:1.1em;background:#eef6ff;padding:.5em}</style></head><body>",
        "<h1>T-Developer benchmarks</h1>",
        f"<p>Machine: {html.escape(_machine_line(machine))}</p><ul>",
    ]
    body += [
        f"<li><a href='#{html.escape(r['name'])}'>{html.escape(r['name'])}</a>: "
        f"{html.escape(r['headline'])}</li>"
        for r in results
    ]
    body.append("</ul>")
    for result in results:
        body.append(f"<h2 id='{html.escape(result['name'])}'>{html.escape(result['name'])}</h2>")
        body.append(f"<p class='headline'>{html.escape(result['headline'])}</p>")
        if result.get("description"):
            body.append(f"<p>{html.escape(str(result['description']))}</p>")
        for chart in result.get("charts", []):
            body.append(f"<div>{svg_chart(chart)}</div>")
        for table in result.get("tables", []):
            body.append(f"<h3>{html.escape(table['title'])}</h3><table><tr>")
            body += [f"<th>{html.escape(str(c))}</th>" for c in table["columns"]]
            body.append("</tr>")
            for row in table["rows"]:
                body.append("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>")
            body.append("</table>")
        if result.get("figures"):
            body.append("<details><summary>All figures</summary><table>")
            body += [
                f"<tr><td>{html.escape(k)}</td><td>{html.escape(_cell(v))}</td></tr>"
                for k, v in _flat(result["figures"])
            ]
            body.append("</table></details>")
        if result.get("notes"):
            body.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in result["notes"]) + "</ul>")
    body.append("</body></html>")
    return "\n".join(body)


def write(results: Sequence[dict[str, Any]], out: Path, machine: dict[str, Any]) -> list[Path]:
    """<name>.json and <name>.md per result, plus results.json, report.md and report.html; returns paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        path = out / f"{result['name']}.json"
        path.write_text(json.dumps({**result, "machine": machine}, indent=2, default=str))
        written.append(path)
        path = out / f"{result['name']}.md"
        path.write_text(markdown(result, machine))
        written.append(path)
    summary = out / "results.json"
    summary.write_text(json.dumps({"machine": machine, "results": list(results)}, indent=2, default=str))
    report_md = out / "report.md"
    report_md.write_text(
        "# T-Developer benchmarks\n\n"
        + f"Machine: {_machine_line(machine)}\n\n"
        + "".join(f"- **{r['name']}**: {r['headline']}\n" for r in results)
        + "\n"
        + "\n".join(markdown(r) for r in results)
    )
    report_html = out / "report.html"
    report_html.write_text(html_page(results, machine))
    return [*written, summary, report_md, report_html]
