"""Run a project's tests isolated from the platform: a copy of the files, in a subprocess that has no AWS
credentials, no network, and limits on time, memory, file size and open files.

Isolation, layer by layer:
- files: the project is written to a fresh temporary directory (a copy; the workspace is never touched);
- environment: scrubbed to PATH, HOME (the copy), LANG and the Python flags; no AWS_*, no tokens;
- network: the child runs in a new, empty network namespace (`unshare -n`) when this host allows it
  (Linux, root or user namespaces); always, a `sitecustomize` guard makes every socket other than
  AF_UNIX raise, so the tests cannot connect anywhere even where namespaces are unavailable (Lambda);
- limits (`resource`, set in the child before exec): CPU seconds, address space, file size, open files,
  plus a wall-clock timeout that kills the child's whole process group.

Supported: Python projects tested with pytest (the interpreter running this code, with its pytest).
Anything else (Node, Go, ...) is reported as `unsupported`, never run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tdev.errors import ConfigurationError
from tdev.workspace import MAX_FILE_BYTES, clean_path

OUTPUT_TAIL_CHARS = 4_000  # what goes back to the agents and the execution record
_SOCKET_GUARD = '''"""Installed by the T-Developer sandbox: this project's tests may not use the network."""
import socket as _socket

_Real = _socket.socket

class _NoNetworkSocket(_Real):
    def __init__(self, family=_socket.AF_INET, type=_socket.SOCK_STREAM, proto=0, fileno=None):
        if family != _socket.AF_UNIX:  # local pipes (socketpair) only
            raise PermissionError("network access is disabled in the T-Developer sandbox")
        super().__init__(family, type, proto, fileno)

def _refuse(*args, **kwargs):
    raise PermissionError("network access is disabled in the T-Developer sandbox")

_socket.socket = _NoNetworkSocket
_socket.create_connection = _refuse
_socket.getaddrinfo = _refuse
'''


@dataclass(frozen=True)
class Limits:
    timeout_seconds: int = 60
    cpu_seconds: int = 60
    memory_bytes: int = 1024 * 1024 * 1024
    file_bytes: int = 16 * 1024 * 1024
    open_files: int = 256


@dataclass
class TestReport:
    """What a test run found. `outcome`: passed, failed, no_tests, timeout, unsupported, error."""

    outcome: str
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    duration_ms: int = 0
    exit_code: int | None = None
    output: str = ""
    failures: list[dict[str, str]] = field(default_factory=list)
    isolation: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "duration_ms": self.duration_ms,
            "exit_code": self.exit_code,
            "output": self.output,
            "failures": self.failures,
            "isolation": self.isolation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestReport:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def summary(self) -> str:
        return f"{self.outcome}: {self.passed} passed, {self.failed} failed, {self.errors} errors" + (
            f", {self.skipped} skipped" if self.skipped else ""
        )


def tail(text: str, limit: int = OUTPUT_TAIL_CHARS) -> str:
    """The end of `text` (where pytest puts its failures and summary), marked when cut."""
    return text if len(text) <= limit else "[... trimmed ...]\n" + text[-limit:]


@cache
def network_namespace_available() -> bool:
    """Whether `unshare -n` works here (Linux with the privilege to create a network namespace)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        return subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _limit_child(limits: Limits) -> Any:
    def apply() -> None:
        import resource

        os.setsid()  # its own process group: the timeout kills everything it started
        for name, value in (
            ("RLIMIT_CPU", limits.cpu_seconds),
            ("RLIMIT_AS", limits.memory_bytes),
            ("RLIMIT_FSIZE", limits.file_bytes),
            ("RLIMIT_NOFILE", limits.open_files),
        ):
            resource.setrlimit(getattr(resource, name), (value, value))

    return apply


def is_python_project(files: dict[str, str]) -> bool:
    return any(path.endswith(".py") for path in files)


def _pytest_site() -> str:
    """The import root pytest was found under (its package's parent directory)."""
    spec = importlib.util.find_spec("pytest")
    if spec is None or spec.origin is None:
        raise ConfigurationError("pytest is not installed where the test sandbox runs")
    return str(Path(spec.origin).parent.parent)


def run_tests(files: dict[str, str], limits: Limits = Limits()) -> TestReport:
    """Run the project's pytest tests on a copy of `files` (path -> text) and report what happened."""
    if not files:
        return TestReport(outcome="no_tests", output="the workspace is empty")
    if not is_python_project(files):
        return TestReport(outcome="unsupported", output="only Python projects tested with pytest run here")
    if importlib.util.find_spec("pytest") is None:
        raise ConfigurationError(
            "pytest is not installed where the test sandbox runs (package it with the function)"
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tdev-sandbox-") as tmp:
        root = Path(tmp) / "project"
        guard = Path(tmp) / "guard"
        guard.mkdir()
        (guard / "sitecustomize.py").write_text(_SOCKET_GUARD)
        for path, content in files.items():
            target = root / clean_path(path)
            data = content.encode("utf-8")
            if len(data) > MAX_FILE_BYTES:
                return TestReport(outcome="error", output=f"{path} is over the {MAX_FILE_BYTES}-byte limit")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        report_file = Path(tmp) / "report.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(root),
            f"--junitxml={report_file}",
            str(root),
        ]
        isolation = ["copy", "scrubbed-env", "socket-guard", "rlimits"]
        if network_namespace_available():
            command = [shutil.which("unshare") or "unshare", "-n", *command]
            isolation.append("netns")
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(root),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            # pytest from where this process found it (deployed: the sandbox function's `testing` layer
            # under /opt/python, which a child interpreter would not search by itself)
            "PYTHONPATH": os.pathsep.join([str(guard), str(root), _pytest_site()]),
            "PYTHONHASHSEED": "0",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # the platform's pytest plugins are not the project's
        }
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit_child(limits),
        )
        try:
            raw, _ = process.communicate(timeout=limits.timeout_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raw, _ = process.communicate()
            return TestReport(
                outcome="timeout",
                duration_ms=int((time.perf_counter() - started) * 1000),
                output=tail(raw.decode("utf-8", "replace"))
                + f"\n[the tests were stopped after {limits.timeout_seconds} s]",
                isolation=isolation,
            )
        output = raw.decode("utf-8", "replace").replace(str(root) + "/", "")
        report = _parse_junit(report_file) if report_file.exists() else TestReport(outcome="error")
        for failure in report.failures:  # paths relative to the project, not the temporary copy
            failure["message"] = failure["message"].replace(str(root) + "/", "")
        report.exit_code = process.returncode
        report.duration_ms = int((time.perf_counter() - started) * 1000)
        report.output = tail(output)
        report.isolation = isolation
        if process.returncode == 5:  # pytest: no tests collected
            report.outcome = "no_tests"
        elif process.returncode == 0 and report.passed:
            report.outcome = "passed"
        elif report.failed or report.errors or process.returncode == 1:
            report.outcome = "failed"
        else:
            report.outcome = "error"
        return report


def _parse_junit(path: Path) -> TestReport:
    report = TestReport(outcome="error")
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if case.find("skipped") is not None:
            report.skipped += 1
        elif problem is not None:
            if problem.tag == "failure":
                report.failed += 1
            else:
                report.errors += 1
            text = (problem.get("message") or "") + "\n" + (problem.text or "")
            report.failures.append({"test": name, "message": tail(text.strip(), 800)})
        else:
            report.passed += 1
    report.failures = report.failures[:10]
    return report
