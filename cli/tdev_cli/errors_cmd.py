"""`tdev errors`: the error analytics of a running `tdev serve` (tdev.incidents), through `/v1/errors`.

    tdev errors list [--status open|resolved] [--since 2026-11-30T00:00Z] [--limit 20] [--json]
    tdev errors show <signature> [--json]          # counts per 5-minute window, first/last seen, sample, MTTR
    tdev errors resolve <signature> --reason "fixed in 1.4.2"

Each command is one API call with a short-lived admin token of the local issuer (as `tdev config`), so
reads and resolutions are authorised and audited exactly as deployed.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from typing import Any

from tdev_cli.config_cmd import CLI_ADMIN, EXIT_OK, _failed, _request


def register(commands: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the server (default: the one recorded in .tdev/serve.json)")
    common.add_argument("--keys-dir", default=".tdev/keys", help="the local issuer's keys")
    common.add_argument("--as", dest="admin", default=CLI_ADMIN, help="the admin principal to act as")
    common.add_argument("--json", action="store_true", help="print the API's JSON")

    errors = commands.add_parser(
        "errors", help="error groups by signature: counts, spikes, MTTR (tdev serve)"
    )
    sub = errors.add_subparsers(dest="errors_command", required=True)
    listing = sub.add_parser("list", parents=[common], help="error groups, most recently seen first")
    listing.add_argument("--status", choices=("open", "resolved"))
    listing.add_argument("--since", help="ISO time: only groups seen since")
    listing.add_argument("--limit", type=int, default=20)
    show = sub.add_parser("show", parents=[common], help="one group: counts over time, sample, MTTR")
    show.add_argument("signature")
    resolve = sub.add_parser("resolve", parents=[common], help="mark a group resolved (its MTTR is recorded)")
    resolve.add_argument("signature")
    resolve.add_argument("--reason", default="resolved")
    errors.set_defaults(func=errors_command)


def errors_command(args: argparse.Namespace) -> int:
    command = args.errors_command
    if command == "list":
        query = {
            k: v for k, v in (("status", args.status), ("since", args.since), ("limit", args.limit)) if v
        }
        status, body = _request(args, "GET", "/v1/errors?" + urllib.parse.urlencode(query))
    else:
        path = f"/v1/errors/{urllib.parse.quote(args.signature, safe='')}"
        if command == "show":
            status, body = _request(args, "GET", path)
        else:
            status, body = _request(args, "POST", f"{path}/resolve", {"reason": args.reason})
    if status >= 400:
        return _failed(status, body)
    print(json.dumps(body, indent=2) if args.json else _text(command, body))
    return EXIT_OK


def _text(command: str, body: dict[str, Any]) -> str:
    if command == "list":
        lines = [f"{'signature':16}  {'status':8}  {'count':>6}  {'last seen':20}  spike  type: message"]
        for g in body["errors"]:
            lines.append(
                f"{g['signature']:16}  {g['status']:8}  {g['count']:>6}  {g['last_seen']:20}  "
                f"{'yes' if g.get('spiking') else '   '}    {g['type']}: {g['message'][:80]}"
            )
        if body.get("next_cursor"):
            lines.append(f"(more: --cursor {body['next_cursor']})")
        return "\n".join(lines) if body["errors"] else "no errors recorded"
    lines = [
        f"signature  {body['signature']} ({body['status']})",
        f"error      {body['type']}: {body['message']}",
        f"where      {body.get('frame') or '(no frame in the project)'}",
        f"sample     {body.get('sample', '')[:300]}",
        f"count      {body['count']} (first {body['first_seen']}, last {body['last_seen']})",
    ]
    if body.get("mttr_seconds") is not None:
        lines.append(
            f"resolved   {body.get('resolved_at') or '(reopened since)'} "
            f"by {body.get('resolved_by') or '-'}; MTTR {body['mttr_seconds']} s"
        )
    if body.get("last_spike"):
        spike = body["last_spike"]
        lines.append(
            f"spike      {spike['count']} in the window of {spike['window_start']} "
            f"(baseline {spike['baseline']}){' — now' if body.get('spiking') else ''}"
        )
    for bucket in body.get("counts", [])[-12:]:
        lines.append(f"  {bucket['at']}  {'#' * min(60, bucket['count'])} {bucket['count']}")
    return "\n".join(lines)
