"""`tdev artifacts EXECUTION_ID --output DIR` and `tdev run ... --output DIR`: the project an execution wrote.

Files come through the API (`GET /v1/executions/{id}/artifacts` and `.../artifacts/{path}`), from the
runtime that ran the execution (`tdev run`) or from a running `tdev serve`. `tdev run` also keeps a copy
of every execution's project in `.tdev/workspaces/<execution-id>/` (a local workspace), which
`tdev artifacts` reads when no server knows the execution.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tdev_cli.token_cmd import server_url

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
KEPT = Path(".tdev/workspaces")

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
    """The local workspace copy `tdev artifacts` reads later (the emulation ends with `tdev run`)."""
    folder = kept / execution_id
    if folder.exists():
        shutil.rmtree(folder)
    download(api, execution_id, folder)
    return folder


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
