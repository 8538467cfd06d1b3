"""`tdev budget` and `tdev suspend` / `tdev unsuspend` against a running `tdev serve`, as an operator runs
them: a user's monthly cap set and shown, a suspended user refused on its very next request, then let back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.serving import serve_env, serving
from tests.e2e.test_config_cli import tdev
from tests.e2e.test_serve import call, token

pytestmark = pytest.mark.slow

REQUEST = json.dumps({"request": "Write unit tests for the parser"}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    cwd = tmp_path_factory.mktemp("budget")
    with serving(cwd, serve_env()) as url:
        yield url, cwd


def test_an_operator_caps_a_user_and_suspends_it(server: tuple[str, Path]) -> None:
    url, cwd = server
    code, shown, _ = tdev(cwd, "budget", "show", "--user", "alice")
    assert code == 0 and shown["source"] == "default" and shown["budget_usd"] == 100.0
    assert shown["spent_usd"] == 0.0 and shown["period"] == shown["period_start"][:7]

    code, changed, _ = tdev(cwd, "budget", "set", "--user", "alice", "--usd", "25", "--reason", "pilot team")
    assert code == 0 and changed["budget_usd"] == 25.0 and changed["override"]["reason"] == "pilot team"
    code, shown, _ = tdev(cwd, "budget", "show", "--user", "alice")
    assert (code, shown["budget_usd"], shown["source"]) == (0, 25.0, "override")
    code, _, err = tdev(cwd, "budget", "set", "--project", "default", "--usd", "-1", "--reason", "oops")
    assert code == 1 and "400" in err and "budget_usd" in err  # validated by the API, nothing written

    alice = token(cwd, "alice", "developer")
    assert call(f"{url}/v1/requests", "POST", REQUEST, alice)[0] == 202
    code, suspended, _ = tdev(cwd, "suspend", "alice", "--reason", "runaway loop")
    assert code == 0 and suspended["suspended"] is True
    status, refused, _ = call(f"{url}/v1/requests", "POST", REQUEST, alice)
    assert (status, refused["error"]) == (403, "UserSuspended")

    code, lifted, _ = tdev(cwd, "unsuspend", "alice", "--reason", "fixed")
    assert code == 0 and lifted["was_suspended"] is True
    assert call(f"{url}/v1/requests", "POST", REQUEST, alice)[0] == 202
