"""`tdev budget` and `tdev suspend` / `tdev unsuspend`: users' and projects' monthly budgets and the user kill
switch, on a running `tdev serve`.

    tdev budget show --user alice                        # this month (UTC): cap, spent, reserved, left
    tdev budget show --project todo-api
    tdev budget set --user alice --usd 25 --tokens 2000000 --reason "pilot team"
    tdev budget set --project todo-api --usd 200 --reason "the project's share"   # omitted: the default
    tdev suspend alice --reason "runaway agent loop"     # refuse new work, stop its executions in flight
    tdev unsuspend alice --reason "fixed"

Each command is one API call (`/v1/users/{id}/budget`, `/v1/projects/{id}/budget`, `/v1/users/{id}/suspend`)
with a short-lived admin token of the local issuer, as `tdev config` makes them: validated, RBAC-checked and
audited exactly as deployed. A request's own cap is `tdev run --budget USD`.
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from tdev_cli.config_cmd import CLI_ADMIN, _call


def register(commands: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the server (default: the one recorded in .tdev/serve.json)")
    common.add_argument("--keys-dir", default=".tdev/keys", help="the local issuer's keys")
    common.add_argument("--as", dest="admin", default=CLI_ADMIN, help="the admin principal to act as")

    budget = commands.add_parser("budget", help="users' and projects' monthly budgets (tdev serve)")
    sub = budget.add_subparsers(dest="budget_command", required=True)
    show = sub.add_parser("show", parents=[common], help="this month's cap, spend and reservations")
    _scope_options(show)
    setter = sub.add_parser("set", parents=[common], help="an admin's monthly cap (validated, audited)")
    _scope_options(setter)
    setter.add_argument("--usd", type=float, help="USD per calendar month (UTC); omitted: the default")
    setter.add_argument("--tokens", type=int, help="tokens per calendar month; omitted: the default")
    setter.add_argument("--reason", required=True)
    budget.set_defaults(func=_budget)

    for name, what in (
        ("suspend", "refuse a user's new requests and sessions, and stop its executions in flight"),
        ("unsuspend", "lift a user's suspension"),
    ):
        command = commands.add_parser(name, parents=[common], help=f"{what} (tdev serve)")
        command.add_argument("user_id")
        command.add_argument("--reason", required=True)
        command.set_defaults(func=_suspension, action=name)


def _scope_options(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--user", help="a user (principal) id")
    scope.add_argument("--project", help="a project id")


def _path(args: argparse.Namespace) -> str:
    if args.user is not None:
        return f"/v1/users/{urllib.parse.quote(args.user, safe='')}/budget"
    return f"/v1/projects/{urllib.parse.quote(args.project, safe='')}/budget"


def _budget(args: argparse.Namespace) -> int:
    if args.budget_command == "show":
        return _call(args, "GET", _path(args))
    body = {"budget_usd": args.usd, "budget_tokens": args.tokens, "reason": args.reason}
    return _call(args, "PUT", _path(args), body)


def _suspension(args: argparse.Namespace) -> int:
    path = f"/v1/users/{urllib.parse.quote(args.user_id, safe='')}/{args.action}"
    return _call(args, "POST", path, {"reason": args.reason})
