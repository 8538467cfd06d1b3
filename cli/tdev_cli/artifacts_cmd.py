"""`tdev artifacts EXECUTION_ID --output DIR` and `tdev run ... --output DIR`: the project an execution wrote.

Files come through the API (`GET /v1/executions/{id}/artifacts` and `.../artifacts/{path}`), from the
runtime that ran the execution (`tdev run`) or from a running `tdev serve`. `tdev run` also keeps a copy
of every execution's project in `.tdev/workspaces/<execution-id>/` (a local workspace), which
`tdev artifacts` reads when no server knows the execution.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tdev_cli.token_cmd import server_url

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
KEPT = Path(".tdev/workspaces")
KEPT_RECORDS = Path(".tdev/executions")  # <id>.json: what each kept project's execution was

Api = Callable[[str, str], tuple[int, Any]]  # (method, path) -> (status, JSON body)


def register(commands: Any) -> None:
    parser = commands.add_parser("artifacts", help="write the project an execution produced into a folder")
    parser.add_argument("execution_id")
    parser.add_argument("--output", "-o", required=True, help="the folder to write the project into")
    parser.add_argument("--url", help="a running `tdev serve` (default: the one in .tdev/serve.json)")
    parser.add_argument("--keys-dir", default=".tdev/keys", help="the local issuer's keys (tdev serve)")
    parser.set_defaults(func=_artifacts)


def _inside(root: Path, relative: str) -> Path:
    """`root/relative`, refused when it would land outside `root` (a hostile or broken server)."""
    from tdev.workspace import clean_path

    target = (root / clean_path(relative)).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"{relative} would be written outside {root}")
    return target


def download(api: Api, execution_id: str, output: Path) -> list[dict[str, Any]]:
    """Write every artifact of the execution under `output`; returns the listing (path, size, sha256)."""
    status, listing = api("GET", f"/v1/executions/{execution_id}/artifacts")
    if status != 200:
        raise RuntimeError(f"cannot list the artifacts ({status}): {listing}")
    output.mkdir(parents=True, exist_ok=True)
    for item in listing["files"]:
        quoted = urllib.parse.quote(item["path"])
        status, body = api("GET", f"/v1/executions/{execution_id}/artifacts/{quoted}")
        if status != 200 or body.get("content") is None:
            raise RuntimeError(f"cannot read {item['path']} ({status}): {body}")
        target = _inside(output, item["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body["content"], encoding="utf-8")
    return list(listing["files"])


def keep_copy(api: Api, execution_id: str, kept: Path = KEPT) -> Path:
    """The local workspace copy `tdev artifacts` and `tdev run --from` read later (the emulation ends with
    `tdev run`), and in KEPT_RECORDS what the execution was (`<id>.json`: status, project), which
    `--from` checks as the API checks a base."""
    folder = kept / execution_id
    if folder.exists():
        shutil.rmtree(folder)
    download(api, execution_id, folder)
    status, view = api("GET", f"/v1/executions/{execution_id}")
    if status == 200:
        record = {k: view.get(k) for k in ("execution_id", "status", "project_id")}
        records = kept.parent / KEPT_RECORDS.name
        records.mkdir(parents=True, exist_ok=True)
        (records / f"{execution_id}.json").write_text(json.dumps(record, indent=2))
    return folder


BASE_STATUSES = ("SUCCEEDED", "DEGRADED")


def zip_folder(folder: Path) -> bytes:
    """The project in `folder` as a zip (plain files only; caches and hidden files left out)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source in sorted(folder.rglob("*")):
            relative = source.relative_to(folder)
            if source.is_symlink() or not source.is_file():
                continue
            if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
                continue
            archive.write(source, relative.as_posix())
    return buffer.getvalue()


def base_fields(
    runtime: Any, execution_id: str | None, archive: str | None, project_id: str
) -> tuple[dict[str, str], str]:
    """The request's base (`tdev run --from / --from-archive`) and a line saying what it is.

    An execution the runtime knows (a session backend) is named as `base_execution_id`: the API checks
    it. One that only this machine remembers (every `tdev run` has its own emulation) is uploaded from its
    kept copy as `base_archive`, after the same checks the API makes (finished well, same project)."""
    if archive is not None:
        path = Path(archive)
        encoded = base64.b64encode(path.read_bytes()).decode()
        return {"base_archive": encoded}, f"base: {path} ({path.stat().st_size:,} bytes zipped)"
    if execution_id is None:
        return {}, ""
    if not re.fullmatch(r"[A-Za-z0-9-]{1,80}", execution_id):
        raise ValueError(f"--from: {execution_id!r} is not an execution id")
    status, _ = runtime.api("GET", f"/v1/executions/{urllib.parse.quote(execution_id)}")
    if status == 200:
        return {"base_execution_id": execution_id}, f"base: execution {execution_id}"
    folder, record_path = KEPT / execution_id, KEPT_RECORDS / f"{execution_id}.json"
    if not folder.is_dir() or not record_path.is_file():
        raise ValueError(f"--from: no execution {execution_id} here (not in {KEPT}/, written by `tdev run`)")
    record = json.loads(record_path.read_text())
    if record.get("status") not in BASE_STATUSES:
        raise ValueError(
            f"--from: execution {execution_id} ended {record.get('status')}; start from a SUCCEEDED one"
        )
    if record.get("project_id") != project_id:
        raise ValueError(
            f"--from: execution {execution_id} belongs to project {record.get('project_id')!r}, "
            f"not {project_id!r} (--project)"
        )
    zipped = zip_folder(folder)
    encoded = base64.b64encode(zipped).decode()
    return {"base_archive": encoded}, f"base: execution {execution_id}'s project, uploaded from {folder}"


def _http_api(url: str, token: str) -> Api:
    def call(method: str, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{url}{path}", method=method, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    return call


def _artifacts(args: argparse.Namespace) -> int:
    output = Path(args.output)
    url = server_url(args.url)
    if url is not None:
        from tdev.security.issuer import LocalIssuer

        token, _ = LocalIssuer(Path(args.keys_dir)).issue("local-developer", ["developer"], ttl_seconds=300)
        try:
            files = download(_http_api(url, str(token)), args.execution_id, output)
        except (RuntimeError, urllib.error.URLError) as exc:
            print(f"tdev artifacts: {url}: {exc}", file=sys.stderr)
        else:
            print(f"wrote {len(files)} files to {output} (from {url})")
            return EXIT_OK
    kept = KEPT / args.execution_id
    if not kept.is_dir():
        print(
            f"tdev artifacts: no execution {args.execution_id} here: not in {KEPT}/ (written by `tdev run`)"
            + ("" if url else " and no `tdev serve` is running"),
            file=sys.stderr,
        )
        return EXIT_FAILED
    count = 0
    for source in sorted(p for p in kept.rglob("*") if p.is_file() and not p.is_symlink()):
        target = _inside(output, source.relative_to(kept).as_posix())
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        count += 1
    print(f"wrote {count} files to {output} (from {kept})")
    return EXIT_OK
