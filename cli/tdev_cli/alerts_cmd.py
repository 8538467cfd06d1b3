"""`tdev alerts`: the alerts of a running `tdev serve` (the local runtime), through the API.

    tdev alerts list [--status ESCALATING] [--severity high] [--limit 20]
    tdev alerts ack <alert id>                 # stops its escalation at the next check

Each command is one API call (`GET /v1/alerts`, `POST /v1/alerts/{id}/ack`) with a short-lived token of the
local issuer (`.tdev/keys`), the same calls `tdev config` makes, so RBAC and the audit trail apply.
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from tdev_cli.config_cmd import _call

CLI_OPERATOR = "tdev-cli-admin"


def register(commands: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the server (default: the one recorded in .tdev/serve.json)")
    common.add_argument("--keys-dir", default=".tdev/keys", help="the local issuer's keys")
    common.add_argument("--as", dest="admin", default=CLI_OPERATOR, help="the principal to act as")
    alerts = commands.add_parser("alerts", help="alerts of the running backend (tdev serve)")
    sub = alerts.add_subparsers(dest="alerts_command", required=True)
    listing = sub.add_parser("list", parents=[common], help="alerts, newest first")
    listing.add_argument("--status", choices=("OPEN", "ESCALATING", "ACKNOWLEDGED", "EXHAUSTED", "FAILED"))
    listing.add_argument("--severity", choices=("critical", "high", "medium", "low"))
    listing.add_argument("--limit", type=int, default=50)
    ack = sub.add_parser("ack", parents=[common], help="acknowledge an alert: its escalation stops")
    ack.add_argument("alert_id")
    alerts.set_defaults(func=_alerts)


def _alerts(args: argparse.Namespace) -> int:
    if args.alerts_command == "list":
        query = {"limit": args.limit, "status": args.status, "severity": args.severity}
        path = "/v1/alerts?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return _call(args, "GET", path)
    return _call(args, "POST", f"/v1/alerts/{urllib.parse.quote(args.alert_id, safe='')}/ack")
