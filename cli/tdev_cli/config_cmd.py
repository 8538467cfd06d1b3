"""`tdev config` and `tdev flags`: the configuration and the feature flags of a running `tdev serve`.

    tdev config get                                            # effective values, where each comes from
    tdev config set default_model bedrock:amazon.nova-lite-v1:0 --reason "cheaper default"
    tdev config set rate_limit_default 50/900 --reason "bots"  # protected: prints a change id to approve
    tdev config approve <change id> --as second-admin          # another admin applies it
    tdev config history [--scope flags]                        # who, what, why, checksum per version
    tdev config rollback 3 --reason "undo"                     # snapshot first, then version 3 again
    tdev config validate max_sessions_per_user=0 default_model=x   # every invalid key listed, nothing written
    tdev config compliance                                     # who changed what, unapproved, overdue secrets
    tdev flags list [--user alice --segment staff]
    tdev flags eval verify_loop --user alice
    tdev flags set verify_loop --off --reason "sandbox maintenance"
    tdev flags set new_ui --on --rollout 20 --salt 2026-11 --variant a=50 --variant b=50 --reason "A/B"

Each command is one API call (`/v1/config...`, `/v1/flags...`) with a short-lived admin token of the local
issuer (`.tdev/keys`, as `tdev token`), so changes are validated, audited and approved exactly as deployed.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tdev_cli.token_cmd import server_url

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CLI_ADMIN = "tdev-cli-admin"


def register(commands: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the server (default: the one recorded in .tdev/serve.json)")
    common.add_argument("--keys-dir", default=".tdev/keys", help="the local issuer's keys")
    common.add_argument("--as", dest="admin", default=CLI_ADMIN, help="the admin principal to act as")

    config = commands.add_parser("config", help="the running backend's configuration (tdev serve)")
    sub = config.add_subparsers(dest="config_command", required=True)
    sub.add_parser("get", parents=[common], help="effective values and where each comes from")
    setter = sub.add_parser(
        "set", parents=[common], help="change one key (validated, audited; protected keys wait for approval)"
    )
    setter.add_argument("key")
    setter.add_argument("value", help="text, a number, or JSON (lists)")
    setter.add_argument("--reason", required=True)
    approve = sub.add_parser(
        "approve", parents=[common], help="approve a protected change (an admin other than its author)"
    )
    approve.add_argument("change_id")
    history = sub.add_parser("history", parents=[common], help="versions, newest first")
    history.add_argument("--scope", choices=("config", "flags"), default="config")
    history.add_argument("--limit", type=int, default=20)
    rollback = sub.add_parser(
        "rollback", parents=[common], help="restore a version (the current state is snapshotted first)"
    )
    rollback.add_argument("version", type=int)
    rollback.add_argument("--scope", choices=("config", "flags"), default="config")
    rollback.add_argument("--reason", required=True)
    validate = sub.add_parser(
        "validate", parents=[common], help="check KEY=VALUE pairs over the current layer, write nothing"
    )
    validate.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
    compliance = sub.add_parser(
        "compliance",
        parents=[common],
        help="who changed what, unapproved changes to protected keys, secrets past their rotation age "
        "(exit 1 when not compliant)",
    )
    compliance.add_argument("--limit", type=int, default=100, help="versions per scope (default 100)")
    config.set_defaults(func=_config)

    flags = commands.add_parser("flags", help="the running backend's feature flags (tdev serve)")
    fsub = flags.add_subparsers(dest="flags_command", required=True)
    listing = fsub.add_parser(
        "list", parents=[common], help="every flag (with --user: its value for that user, and why)"
    )
    listing.add_argument("--user")
    listing.add_argument("--segment")
    evaluate = fsub.add_parser(
        "eval", parents=[common], help="one flag's value, reason and variant for a user"
    )
    evaluate.add_argument("name")
    evaluate.add_argument("--user", required=True)
    evaluate.add_argument("--segment")
    flag_set = fsub.add_parser("set", parents=[common], help="write a flag's document (validated, audited)")
    flag_set.add_argument("name")
    switch = flag_set.add_mutually_exclusive_group()
    switch.add_argument("--on", dest="enabled", action="store_true", default=None)
    switch.add_argument("--off", dest="enabled", action="store_false")
    flag_set.add_argument("--rollout", type=int, help="percentage of users (hash(salt + user) % 100)")
    flag_set.add_argument("--salt")
    flag_set.add_argument("--variant", action="append", default=[], metavar="NAME=WEIGHT")
    flag_set.add_argument("--target-user", action="append", default=[])
    flag_set.add_argument("--target-segment", action="append", default=[])
    flag_set.add_argument("--prerequisite", action="append", default=[])
    flag_set.add_argument("--start", help="ISO time the flag may turn on")
    flag_set.add_argument("--end", help="ISO time it turns off")
    flag_set.add_argument("--default-on-error", action="store_true")
    flag_set.add_argument("--spec", help="the whole document as JSON (options above are added to it)")
    flag_set.add_argument("--reason", required=True)
    flags.set_defaults(func=_flags)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _config(args: argparse.Namespace) -> int:
    command = args.config_command
    if command == "get":
        return _call(args, "GET", "/v1/config")
    if command == "set":
        path = f"/v1/config/{urllib.parse.quote(args.key, safe='')}"
        return _call(args, "PUT", path, {"value": _value(args.value), "reason": args.reason})
    if command == "approve":
        return _call(
            args, "POST", f"/v1/config/changes/{urllib.parse.quote(args.change_id, safe='')}/approve"
        )
    if command == "history":
        return _call(args, "GET", f"/v1/config/history?scope={args.scope}&limit={args.limit}")
    if command == "compliance":
        status, body = _request(args, "GET", f"/v1/config/compliance?limit={args.limit}")
        if status != 200:
            return _failed(status, body)
        print(json.dumps(body, indent=2))
        return EXIT_OK if body.get("compliant") else EXIT_FAILED
    if command == "rollback":
        body = {"scope": args.scope, "version": args.version, "reason": args.reason}
        return _call(args, "POST", "/v1/config/rollback", body)
    layer: dict[str, str] = {}
    for pair in args.pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            print(f"tdev config validate: {pair!r} is not KEY=VALUE", file=sys.stderr)
            return EXIT_USAGE
        layer[key] = value
    return _call(args, "POST", "/v1/config/validate", {"scope": "config", "layer": layer})


def _flags(args: argparse.Namespace) -> int:
    command = args.flags_command
    if command in ("list", "eval"):
        query = {k: v for k, v in (("user", args.user), ("segment", args.segment)) if v}
        path = "/v1/flags" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        if command == "list":
            return _call(args, "GET", path)
        status, body = _request(args, "GET", path)
        if status != 200:
            return _failed(status, body)
        flag = body["flags"].get(args.name)
        if flag is None:
            print(f"tdev flags eval: no flag {args.name!r}", file=sys.stderr)
            return EXIT_FAILED
        print(json.dumps({"flag": args.name, "user": args.user, **flag}, indent=2))
        return EXIT_OK
    try:
        spec: dict[str, Any] = json.loads(args.spec) if args.spec else {}
        variants = [
            {"name": name, "weight": int(weight)}
            for name, _, weight in (v.partition("=") for v in args.variant)
        ]
    except ValueError as exc:
        print(f"tdev flags set: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for key, value in (
        ("enabled", args.enabled),
        ("rollout_percent", args.rollout),
        ("salt", args.salt),
        ("variants", variants or None),
        ("users", args.target_user or None),
        ("segments", args.target_segment or None),
        ("prerequisites", args.prerequisite or None),
        ("default_on_error", args.default_on_error or None),
    ):
        if value is not None:
            spec[key] = value
    if args.start or args.end:
        spec["schedule"] = {k: v for k, v in (("start", args.start), ("end", args.end)) if v}
    path = f"/v1/flags/{urllib.parse.quote(args.name, safe='')}"
    return _call(args, "PUT", path, {"spec": spec, "reason": args.reason})


def _request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = server_url(args.url)
    if url is None:
        raise SystemExit("no running server found (.tdev/serve.json): start `tdev serve` or pass --url")
    from tdev.security.issuer import LocalIssuer

    token, _ = LocalIssuer(args.keys_dir).issue(args.admin, ["admin"], ttl_seconds=60)
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(f"{url}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"null")
    except urllib.error.URLError as exc:
        raise SystemExit(f"cannot reach {url}: {exc.reason}") from None


def _failed(status: int, body: Any) -> int:
    print(f"refused ({status}): {json.dumps(body, indent=2)}", file=sys.stderr)
    return EXIT_FAILED


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> int:
    status, answer = _request(args, method, path, body)
    if status >= 400:
        return _failed(status, answer)
    print(json.dumps(answer, indent=2))
    return EXIT_OK
