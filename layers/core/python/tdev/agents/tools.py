"""The workspace tools agents work with: list, read, write and patch files, search text, run the tests.

An Agno toolkit over one execution's workspace (tdev.workspace): every path goes through the workspace's
rules (relative, no `..`, no symlinks, bounded sizes and counts), and answers are bounded too, so a tool
result cannot flood a model's context. A refused operation answers `error: ...` to the model (which can
correct itself) instead of failing the agent run. What the agent wrote is kept in `changed`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence

from agno.tools import Toolkit

from tdev.sandbox import TestReport, tail
from tdev.workspace import MAX_FILES, Workspace, WorkspaceError, clean_path

MAX_READ_LINES = 400
MAX_SEARCH_HITS = 100
MAX_PATTERN_CHARS = 200
MAX_TOOL_CALLS = 60  # per agent run (Agno's tool_call_limit)

TestRunner = Callable[[dict[str, str]], TestReport]


def _default_runner(files: dict[str, str]) -> TestReport:
    from tdev.sandbox.client import run_project_tests

    return run_project_tests(files)


def format_report(report: TestReport) -> str:
    """A test report as the agents (and the review's verdict) quote it."""
    lines = [f"tests {report.summary()} (sandbox: {', '.join(report.isolation) or 'none'})"]
    for failure in report.failures[:5]:
        lines.append(f"FAILED {failure['test']}: {tail(failure['message'], 600)}")
    if report.outcome not in {"passed", "failed"}:
        lines.append(tail(report.output, 1500))
    return "\n".join(lines)


class WorkspaceTools(Toolkit):
    """The tools named in `allowed` (an agent spec's `tools`), bound to `workspace`."""

    def __init__(
        self, workspace: Workspace, allowed: Sequence[str], *, test_runner: TestRunner | None = None
    ) -> None:
        self.workspace = workspace
        self.test_runner = test_runner or _default_runner
        self.changed: list[str] = []
        self.reports: list[TestReport] = []
        available: dict[str, Callable[..., str]] = {
            "list_files": self.list_files,
            "read_file": self.read_file,
            "write_file": self.write_file,
            "patch_file": self.patch_file,
            "search_text": self.search_text,
            "run_tests": self.run_tests,
        }
        unknown = set(allowed) - set(available)
        if unknown:
            raise ValueError(f"unknown workspace tools: {sorted(unknown)}")
        super().__init__(name="workspace", tools=[available[name] for name in allowed])

    def _changed(self, path: str) -> None:
        if path not in self.changed:
            self.changed.append(path)

    def list_files(self) -> str:
        """List the project's files, one per line as `path<TAB>size in bytes`."""
        files = self.workspace.files()
        if not files:
            return "the workspace is empty"
        return "\n".join(f"{f.path}\t{f.size}" for f in files[:MAX_FILES])

    def read_file(self, path: str, start_line: int = 1, max_lines: int = MAX_READ_LINES) -> str:
        """Read a text file of the project. Lines are numbered (`  12| text`) so findings can cite them.

        Args:
            path: the file's path relative to the project root, e.g. `src/app.py`.
            start_line: the first line to show (1-based).
            max_lines: how many lines to show (at most 400).
        """
        try:
            lines = self.workspace.read_text(path).splitlines()
        except WorkspaceError as exc:
            return f"error: {exc.message}"
        start = max(1, int(start_line))
        count = max(1, min(int(max_lines), MAX_READ_LINES))
        shown = lines[start - 1 : start - 1 + count]
        body = "\n".join(f"{number:>4}| {text}" for number, text in enumerate(shown, start=start))
        more = len(lines) - (start - 1 + len(shown))
        footer = f"\n[{more} more lines: read again with start_line={start + len(shown)}]" if more > 0 else ""
        return f"# {clean_path(path)} ({len(lines)} lines)\n{body}{footer}"

    def write_file(self, path: str, content: str) -> str:
        """Create or replace a file of the project with `content` (UTF-8 text).

        Args:
            path: the file's path relative to the project root, e.g. `tests/test_app.py`.
            content: the whole new content of the file.
        """
        try:
            info = self.workspace.write(path, content)
        except WorkspaceError as exc:
            return f"error: {exc.message}"
        self._changed(info.path)
        return f"wrote {info.path} ({info.size} bytes, sha256 {info.sha256[:12]})"

    def patch_file(self, path: str, old: str, new: str) -> str:
        """Replace the one occurrence of `old` in a file with `new` (refused if `old` is missing or repeated).

        Args:
            path: the file's path relative to the project root.
            old: the exact text to replace; it must occur exactly once.
            new: the replacement text.
        """
        try:
            text = self.workspace.read_text(path)
            count = text.count(old) if old else 0
            if count != 1:
                where = clean_path(path)
                return f"error: the text to replace occurs {count} times in {where}; it must occur once"
            info = self.workspace.write(path, text.replace(old, new, 1))
        except WorkspaceError as exc:
            return f"error: {exc.message}"
        self._changed(info.path)
        return f"patched {info.path} ({info.size} bytes)"

    def search_text(self, text: str, path_glob: str = "*") -> str:
        """Find lines containing `text` (plain text, case-sensitive) in the project's files.

        Args:
            text: the text to look for.
            path_glob: only files whose path matches this glob, e.g. `*.py` (default: every file).
        """
        if not text or len(text) > MAX_PATTERN_CHARS:
            return f"error: the search text must be 1..{MAX_PATTERN_CHARS} characters"
        hits: list[str] = []
        for info in self.workspace.files():
            if not fnmatch.fnmatch(info.path, path_glob):
                continue
            try:
                lines = self.workspace.read_text(info.path).splitlines()
            except WorkspaceError:
                continue  # not text
            for number, line in enumerate(lines, start=1):
                if text in line:
                    hits.append(f"{info.path}:{number}: {line.strip()[:200]}")
                    if len(hits) >= MAX_SEARCH_HITS:
                        return "\n".join([*hits, f"[stopped after {MAX_SEARCH_HITS} matches]"])
        return "\n".join(hits) if hits else f"no line contains {text!r}"

    def run_tests(self) -> str:
        """Run the project's tests (pytest) in the sandbox and report passed/failed tests and failures."""
        files: dict[str, str] = {}
        for path, content in self.workspace.snapshot().items():
            try:
                files[path] = content.decode("utf-8")
            except UnicodeDecodeError:
                continue  # binary files do not take part in a Python test run
        report = self.test_runner(files)
        self.reports.append(report)
        return format_report(report)
