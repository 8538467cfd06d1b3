"""How the offline model works with tools: it plans tool calls per role, Agno runs them, and it answers
from what the tools returned, exactly the loop a real model goes through with Agno's tool calling.

A turn is decided from the conversation since the last user message: how many assistant turns there
were (the round) and what the tools answered. The projects themselves come from tdev.llm.offline_projects.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agno.models.message import Message

from tdev.llm.offline_projects import Project

_FIX = re.compile(r"<test-failures\b[^>]*>\n?(.*?)\n?</test-failures>", re.DOTALL)
_READ_HEADER = re.compile(r"^# (\S+) \((\d+) lines\)$")
_NUMBERED = re.compile(r"^\s*(\d+)\| ?(.*)$")
MAX_FILES_READ = 20


@dataclass(frozen=True)
class Turn:
    round: int
    results: list[tuple[str, str]]  # (tool name, answer) of the tool calls so far, in order
    prompt: str


def read_turn(messages: Sequence[Message]) -> Turn:
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    since = list(messages[last_user + 1 :])
    return Turn(
        round=sum(1 for m in since if m.role == "assistant"),
        results=[(m.tool_name or "", m.get_content_string()) for m in since if m.role == "tool"],
        prompt=messages[last_user].get_content_string() if last_user >= 0 else "",
    )


def call(name: str, **arguments: Any) -> dict[str, Any]:
    """One tool call in the OpenAI shape Agno parses."""
    return {
        "id": f"call_{uuid.uuid4().hex[:12]}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


_EXISTING = re.compile(r"<existing-project\b[^>]*>\n?(.*?)\n?</existing-project>", re.DOTALL)


def existing_files(prompt: str) -> set[str]:
    """The paths of the project the workspace started from (compose_prompt's <existing-project>)."""
    match = _EXISTING.search(prompt)
    if not match:
        return set()
    return {line.strip() for line in match.group(1).splitlines() if line.strip() and not line.startswith("[")}


def own_path(project: Project, path: str) -> bool:
    """A file of this project's own: its package and its test module (shared files are the base's)."""
    return path.startswith(f"{project.name}/") or path == f"tests/test_{project.name}.py"


def failures_in(prompt: str) -> str | None:
    match = _FIX.search(prompt)
    return match.group(1).strip() if match else None


# ------------------------------------------------------------------------------------ role plans
def plan_calls(role: str, turn: Turn, project: Project, tools: set[str]) -> list[dict[str, Any]]:
    """The tool calls for this round, or [] when it is time to answer."""

    def only(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [c for c in calls if c["function"]["name"] in tools]

    # On an existing project, the base's shared files (pyproject.toml, README.md, docs/design.md, ...) are
    # kept as they are: this model adds its own package and tests beside them, or rewrites its own.
    existing = existing_files(turn.prompt)

    def writes(files: dict[str, str]) -> list[dict[str, Any]]:
        kept = {p: c for p, c in files.items() if p not in existing or own_path(project, p)}
        return [call("write_file", path=p, content=c) for p, c in kept.items()]

    if role == "DesignAgent" and turn.round == 0:
        design = "docs/design.md" if "docs/design.md" not in existing else f"docs/{project.name}.md"
        return only([call("write_file", path=design, content=project.design)])
    if role == "CodeAgent" and turn.round == 0:
        return only(writes(project.sources))
    if role == "TestAgent":
        if turn.round == 0:
            return only(writes(project.tests))
        if turn.round == 1:
            return only([call("run_tests")])
    if role == "SecurityAgent":
        if turn.round == 0:
            return only([call("list_files")])
        if turn.round == 1:
            listing = next((answer for name, answer in turn.results if name == "list_files"), "")
            paths = [line.split("\t")[0] for line in listing.splitlines() if "\t" in line]
            wanted = [p for p in paths if p.endswith((".py", ".toml", ".cfg", ".txt", ".json"))]
            return only([call("read_file", path=p) for p in wanted[:MAX_FILES_READ]])
    if role == "ReviewAgent" and turn.round == 0:
        return only([call("list_files"), call("run_tests")])
    return []


def answer(role: str, turn: Turn, project: Project, fallback: Callable[[], str]) -> str:
    """The final answer once the tools have run, built from what they returned."""
    wrote = [a for n, a in turn.results if n in ("write_file", "patch_file")]
    tests = [a for n, a in turn.results if n == "run_tests"]
    if role == "DesignAgent":
        return f"{project.design}\n---\nWorkspace: {'; '.join(wrote) or 'nothing written'}"
    if role == "CodeAgent":
        fix = failures_in(turn.prompt)
        lines = [f"# Code: {project.title}", ""]
        if fix is not None:
            lines += ["Fixed the code for the failing tests:", "", *fix.splitlines()[:8], ""]
        lines += ["Files written to the workspace:", *(f"- {w}" for w in wrote), "", "Usage:", project.usage]
        return "\n".join(lines)
    if role == "TestAgent":
        lines = [f"# Tests: {project.title}", "", "Files written:", *(f"- {w}" for w in wrote)]
        lines += ["", "Test results (run_tests):", *(tests or ["the tests were not run (no run_tests tool)"])]
        return "\n".join(lines)
    if role == "SecurityAgent":
        return security_findings(project, turn)
    if role == "ReviewAgent":
        return review_verdict(project, turn)
    return fallback()


# -------------------------------------------------------------------------------------- security
_RULES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"\b(eval|exec)\("), "HIGH", "eval/exec of data allows code injection"),
    (re.compile(r"pickle\.loads?\(|yaml\.load\("), "HIGH", "unsafe deserialisation of untrusted data"),
    (re.compile(r"shell=True|os\.system\("), "HIGH", "a shell command built from data (command injection)"),
    (re.compile(r"""make_server\(\s*["']0\.0\.0\.0"""), "MEDIUM", "the server listens on every interface"),
    (
        re.compile(r"^def make_app\("),
        "MEDIUM",
        "no authentication or authorisation: whoever reaches the server can read and change every item; "
        "keep it on 127.0.0.1 or put it behind an authenticating proxy before exposing it",
    ),
    (re.compile(r"^MAX_BODY_BYTES = "), "OK", "request bodies are capped (413 above the limit)"),
    (re.compile(r"^def validate\("), "OK", "types, lengths and allowed fields are validated at the boundary"),
    (re.compile(r"uuid\.uuid4\(\)"), "OK", "ids are random (uuid4), not guessable sequence numbers"),
    (
        re.compile(r"\.read_text\(encoding="),
        "LOW",
        "reads any path given on the command line with the caller's rights: fine for a local tool, do not "
        "expose it as a service",
    ),
    (re.compile(r"(?i)(password|secret|api_key|token)\s*=\s*[\"'][^\"']{6,}"), "HIGH", "a hard-coded secret"),
]


def _read_files(turn: Turn) -> dict[str, list[tuple[int, str]]]:
    files: dict[str, list[tuple[int, str]]] = {}
    for name, result in turn.results:
        if name != "read_file":
            continue
        lines = result.splitlines()
        header = _READ_HEADER.match(lines[0]) if lines else None
        if header is None:
            continue
        numbered = [(_NUMBERED.match(line)) for line in lines[1:]]
        files[header.group(1)] = [(int(m.group(1)), m.group(2)) for m in numbered if m]
    return files


def security_findings(project: Project, turn: Turn) -> str:
    files = _read_files(turn)
    findings: list[str] = []
    for path, numbered in files.items():
        if path.startswith("tests/"):
            continue  # test code is not deployed
        for number, text in numbered:
            for pattern, severity, message in _RULES:
                if pattern.search(text):
                    findings.append(f"- [{severity}] {path}:{number}: {message}")
    high = sum(1 for f in findings if "[HIGH]" in f)
    lines = [
        f"# Security review: {project.title}",
        "",
        f"Read {len(files)} files of the workspace ({', '.join(sorted(files)) or 'none'}).",
        "",
        "## Findings (file:line)",
        *(findings or ["- none of the checked patterns occur"]),
        "",
        "## Summary",
        f"{high} high-severity finding(s)." if high else "No high-severity findings.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- review
def review_verdict(project: Project, turn: Turn) -> str:
    listing = next((a for n, a in turn.results if n == "list_files"), "")
    tests = next((a for n, a in turn.results if n == "run_tests"), "")
    files = [line.split("\t")[0] for line in listing.splitlines() if "\t" in line]
    first = tests.splitlines()[0] if tests else "the tests were not run"
    passed = first.startswith("tests passed:")
    lines = [
        f"# Review: {project.title}",
        "",
        f"## Files ({len(files)})",
        *(f"- {f}" for f in files[:30]),
        "",
        "## Test results (quoted from run_tests)",
        *(f"> {line}" for line in (tests.splitlines()[:12] or [first])),
        "",
        "## Verdict",
    ]
    if not files:
        lines.append("CHANGES REQUESTED: the workspace is empty; there is nothing to ship.")
    elif passed:
        lines.append(f"APPROVED: {first.removeprefix('tests ')}.")
    else:
        lines.append(f"CHANGES REQUESTED: {first.removeprefix('tests ')}.")
    return "\n".join(lines)
