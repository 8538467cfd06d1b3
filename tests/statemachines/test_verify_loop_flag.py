"""The `verify_loop` flag switches the verify loop of a running local backend, without a redeploy: a request
is tested while the flag is on, the next one (after an admin turns it off through the API) is not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.statemachines.test_verify_loop import CSV_REQUEST

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rt(redis_server: str) -> Iterator[Any]:
    from tdev_cli.runtime import LocalRuntime

    with LocalRuntime(redis_url=redis_server, max_verify_iterations=2, config_poll_seconds=1) as runtime:
        yield runtime


def test_turning_the_verify_loop_off_skips_the_tests_of_the_next_request(rt: Any) -> None:
    # Given the flag on (its default): the request's project is tested
    tested = rt.as_principal("dev", ("developer",)).run(CSV_REQUEST, timeout=300)
    assert tested["status"] == "SUCCEEDED"
    assert [i["outcome"] for i in tested["verify"]] == ["passed"]

    # When an admin turns the flag off on the running backend
    status, body = rt.as_principal("root", ("admin",)).api(
        "PUT", "/v1/flags/verify_loop", {"spec": {"enabled": False}, "reason": "sandbox maintenance"}
    )
    assert status == 200 and body["changed"]["verify_loop"]["to"] == '{"enabled": false}'

    # Then the next request ends after its agents, untested, and still succeeds
    untested = rt.as_principal("dev", ("developer",)).run(CSV_REQUEST, timeout=300)
    assert untested["status"] == "SUCCEEDED" and untested["verify"] == []

    # And turning it back on (another audited version) tests again
    rt.as_principal("root", ("admin",)).api(
        "PUT", "/v1/flags/verify_loop", {"spec": {"enabled": True}, "reason": "maintenance over"}
    )
    again = rt.as_principal("dev", ("developer",)).run(CSV_REQUEST, timeout=300)
    assert [i["outcome"] for i in again["verify"]] == ["passed"]
    history = rt.as_principal("root", ("admin",)).api("GET", "/v1/config/history?scope=flags")
    assert [v["reason"] for v in history[1]["versions"]] == ["maintenance over", "sandbox maintenance"]
