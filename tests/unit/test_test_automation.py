"""The test run's own guarantees: no network beyond this machine, flaky tests reported, JUnit XML."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pytest_socket import SocketConnectBlockedError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("address", [("192.0.2.1", 443), ("93.184.215.14", 80), ("2001:db8::1", 443)])
def test_a_connection_beyond_this_machine_is_refused_before_it_leaves(address: tuple[str, int]) -> None:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock, pytest.raises(SocketConnectBlockedError):
        sock.connect(address)


def test_loopback_stays_reachable() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            accepted, _ = server.accept()
            accepted.close()


def test_a_test_that_passes_on_its_retry_is_reported_flaky_and_the_junit_xml_is_written(
    tmp_path: Path,
) -> None:
    """Runs a small suite the way `make test` runs this one (--reruns 1, --junitxml, this conftest)."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    marker = tmp_path / "first-attempt-done"
    (suite / "test_sample.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path

            def test_passes_on_the_retry():
                marker = Path({str(marker)!r})
                if not marker.exists():
                    marker.write_text("x")
                    raise AssertionError("first attempt fails")

            def test_steady():
                assert True
            """
        )
    )
    junit = tmp_path / "results" / "junit.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            "--reruns",
            "1",
            f"--junitxml={junit}",
            "--rootdir",
            str(suite),
            "-c",
            "/dev/null",
            str(suite),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FLAKY test_sample.py::test_passes_on_the_retry" in done.stdout, done.stdout
    assert (junit.parent / "flaky.txt").read_text() == "test_sample.py::test_passes_on_the_retry\n"
    assert 'tests="2"' in junit.read_text()
