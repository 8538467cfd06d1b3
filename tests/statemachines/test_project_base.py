"""A request that starts from an existing project, through the API, the real ASL and the sandbox.

The base is an earlier execution's project (copied within the workspace bucket) or an uploaded zip. The
agents see its files (the prompt lists them; the tools read them), the verify loop runs its tests with the
new ones, and the project keeps what the request did not ask to change. Refusals are 4xx naming the field:
someone else's execution (404, as if it did not exist), an unfinished one (409), another project's (400),
a hostile archive (400). The deployed artifact route answers a presigned URL, after the membership check.
"""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

pytestmark = pytest.mark.slow

CSV_REQUEST = "Build a CLI that converts CSV to JSON, with tests"
FOLLOW_UP = "Add a CLI that counts the words in a text file, with tests"


@pytest.fixture(scope="module")
def rt(redis_server: str) -> Iterator[Any]:
    from tdev_cli.runtime import LocalRuntime

    with LocalRuntime(redis_url=redis_server) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def base(rt: Any) -> dict[str, Any]:
    view = rt.run(CSV_REQUEST, timeout=300)
    assert view["status"] == "SUCCEEDED", view.get("error")
    return dict(view)


def files_of(rt: Any, execution_id: str) -> dict[str, str]:
    status, listing = rt.api("GET", f"/v1/executions/{execution_id}/artifacts")
    assert status == 200, listing
    return {f["path"]: f["sha256"] for f in listing["files"]}


def text_of(rt: Any, execution_id: str, path: str) -> str:
    status, one = rt.api("GET", f"/v1/executions/{execution_id}/artifacts/{path}")
    assert status == 200, one
    return str(one["content"])


def test_a_follow_up_request_starts_from_the_earlier_execution_and_runs_its_tests_too(
    rt: Any, base: dict[str, Any]
) -> None:
    base_id = base["execution_id"]
    base_files = files_of(rt, base_id)

    view = rt.run(FOLLOW_UP, base_execution_id=base_id, timeout=300)

    assert view["status"] == "SUCCEEDED", view.get("error")
    assert view["base"] == {
        "source": "execution",
        "execution_id": base_id,
        "files": sorted(base_files),
        "sha256": base_files,
    }
    files = files_of(rt, view["execution_id"])
    # The base's project is all there, unchanged (shared files kept), and the new tool sits beside it
    assert {p: files[p] for p in base_files} == base_files
    assert {"text_stats/cli.py", "tests/test_text_stats.py"} <= set(files)
    # The verify loop ran the base's tests with the new ones: more tests than the base had passed
    before, after = base["verify"][-1]["tests"], view["verify"][-1]["tests"]
    # ... and its first iteration counts as changed only what this request's agents wrote
    assert view["verify"][0]["files_changed"] == [
        "tests/test_text_stats.py",
        "text_stats/__init__.py",
        "text_stats/__main__.py",
        "text_stats/cli.py",
    ]
    assert view["verify"][-1]["outcome"] == "passed" and after["failed"] == 0
    assert after["passed"] > before["passed"] >= 10
    # The agents were told: the code agent's prompt listed the existing project
    code = next(r for r in view["results"] if r["agent"] == "CodeAgent")
    assert "text_stats/cli.py" in " ".join(code["files_changed"])
    assert not {"pyproject.toml", "README.md"} & set(code["files_changed"])
    # The base itself is untouched
    assert files_of(rt, base_id) == base_files


def test_an_uploaded_archive_is_the_starting_project(rt: Any, base: dict[str, Any]) -> None:
    # The artifacts zip (project/ folder) of the base, uploaded as the base of a new request
    response = rt.http(
        "GET",
        f"/v1/executions/{base['execution_id']}/artifacts.zip",
        {"Authorization": f"Bearer {rt.token()}"},
        None,
    )
    assert response["statusCode"] == 200
    archive = base64.b64decode(response["body"])
    assert all(n.startswith("project/") for n in zipfile.ZipFile(io.BytesIO(archive)).namelist())

    status, accepted = rt.api(
        "POST", "/v1/requests", {"request": FOLLOW_UP, "base_archive": base64.b64encode(archive).decode()}
    )

    assert status == 202, accepted
    view = rt.wait(accepted["execution_id"], timeout=300)
    assert view["status"] == "SUCCEEDED" and view["base"]["source"] == "archive"
    assert "csv_to_json/cli.py" in view["base"]["files"] and view["base"]["execution_id"] is None
    files = files_of(rt, view["execution_id"])
    assert {"csv_to_json/cli.py", "tests/test_csv_to_json.py", "text_stats/cli.py"} <= set(files)
    assert view["verify"][-1]["tests"]["passed"] > base["verify"][-1]["tests"]["passed"]


def test_someone_elses_execution_is_not_a_base_for_them(rt: Any, base: dict[str, Any]) -> None:
    mallory = {"Authorization": f"Bearer {rt.token('mallory')}"}
    for base_id in (base["execution_id"], "no-such-execution"):
        status, body = rt.api(
            "POST", "/v1/requests", {"request": FOLLOW_UP, "base_execution_id": base_id}, headers=mallory
        )
        # 404 for both: whether someone else's execution exists is not revealed
        assert (status, body["field"]) == (404, "base_execution_id"), body


def test_an_unfinished_or_foreign_base_is_refused_naming_the_field(rt: Any, base: dict[str, Any]) -> None:
    from tests.statemachines.test_reconciler import orphan

    pending = orphan(rt)  # PENDING, no workflow: the base is not finished
    status, body = rt.api("POST", "/v1/requests", {"request": FOLLOW_UP, "base_execution_id": pending})
    assert (status, body["field"]) == (409, "base_execution_id"), body
    assert "PENDING" in body["message"]
    # ... and once it has FAILED, it is finished but not a project to start from
    from tdev.orchestration.workflow import fail_unrecorded

    fail_unrecorded(pending, "never started")
    status, body = rt.api("POST", "/v1/requests", {"request": FOLLOW_UP, "base_execution_id": pending})
    assert (status, body["field"]) == (400, "base_execution_id") and "ended FAILED" in body["message"], body

    status, body = rt.api(
        "POST",
        "/v1/requests",
        {"request": FOLLOW_UP, "base_execution_id": base["execution_id"], "project_id": "elsewhere"},
    )
    assert (status, body["field"]) == (400, "base_execution_id"), body
    assert "belongs to project 'default'" in body["message"]

    status, body = rt.api(
        "POST",
        "/v1/requests",
        {"request": FOLLOW_UP, "base_execution_id": base["execution_id"], "base_archive": "UEsFBg=="},
    )
    assert (status, body["field"]) == (400, "base_archive"), body


@pytest.mark.parametrize(
    ("entries", "says"),
    [
        ({"../../etc/cron.d/evil": "x"}, "leaves the workspace"),
        ({"/etc/passwd": "x"}, "absolute"),
        ({"link": "/etc/passwd"}, "symlink"),
    ],
)
def test_a_hostile_archive_is_refused_naming_the_field(rt: Any, entries: dict[str, str], says: str) -> None:
    import stat

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name)
            if name == "link":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, content)
    encoded = base64.b64encode(buffer.getvalue()).decode()

    status, body = rt.api("POST", "/v1/requests", {"request": FOLLOW_UP, "base_archive": encoded})

    assert (status, body["field"]) == (400, "base_archive"), body
    assert says in body["message"]


def test_deployed_an_artifact_comes_with_a_short_lived_presigned_url_after_the_membership_check(
    rt: Any, base: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests

    from tdev.settings import get_settings

    execution_id = base["execution_id"]
    path = f"/v1/executions/{execution_id}/artifacts/csv_to_json/cli.py"
    monkeypatch.setenv("TDEV_ENV", "dev")  # the presign branch: any environment but local
    get_settings.cache_clear()
    try:
        # Someone else: 404 before any URL is made
        status, refused = rt.api("GET", path, headers={"Authorization": f"Bearer {rt.token('mallory')}"})
        assert status == 404 and "url" not in refused

        status, one = rt.api("GET", path)
    finally:
        monkeypatch.delenv("TDEV_ENV")
        get_settings.cache_clear()

    assert status == 200, one
    url = urlparse(one["url"])
    assert url.path.endswith(f"/workspaces/{execution_id}/csv_to_json/cli.py")
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["300"] and query["X-Amz-Signature"][0]
    # The URL serves the file's bytes (moto answers the signed GET)
    fetched = requests.get(one["url"], timeout=10)
    assert fetched.status_code == 200 and fetched.text == one["content"]
