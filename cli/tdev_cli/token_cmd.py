"""`tdev token`: tokens of the local issuer, and revocation on a running `tdev serve`.

    TOKEN=$(tdev token --user alice --role developer)       # prints only the token
    tdev token revoke <jti or token>                          # revoked on the running server

The bridge to `tdev serve` is the folder `.tdev/`: the issuer's keys (`.tdev/keys/`, which the server
validates against) and `.tdev/serve.json` (the running server's URL). Revocation is an API call: the CLI
signs a short-lived admin token and calls `POST /v1/tokens/revoke`, so the revocation lands where the
server looks — its Redis (a key per jti with the token's remaining lifetime) and its table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
USER_PATTERN = re.compile(r"^[A-Za-z0-9@._:-]{1,128}$")
ROLE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
CLI_ADMIN = "tdev-cli-admin"


def register(commands: Any) -> None:
    token = commands.add_parser("token", help="print a token of the local issuer (tdev serve accepts it)")
    token.add_argument("--user", help="the token's subject (principal)")
    token.add_argument("--role", action="append", default=[], help="a role (repeat for several)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (1..86400, default 3600)")
    token.add_argument(
        "--keys-dir", default=".tdev/keys", help="the local issuer's keys (default .tdev/keys)"
    )
    token.add_argument("--claims", action="store_true", help="print the claims (JSON) to stderr too")
    token.set_defaults(func=_token)
    actions = token.add_subparsers(dest="token_command")
    revoke = actions.add_parser("revoke", help="revoke a token (by jti or the token itself) on tdev serve")
    revoke.add_argument("jti", help="the token id (jti claim) or the whole token")
    revoke.add_argument("--url", help="the server (default: the one recorded in .tdev/serve.json)")
    revoke.add_argument("--keys-dir", default=".tdev/keys")
    revoke.set_defaults(func=_revoke)


def _issuer(keys_dir: str) -> Any:
    from tdev.security.issuer import LocalIssuer

    return LocalIssuer(keys_dir)


def _token(args: argparse.Namespace) -> int:
    if not args.user or not USER_PATTERN.match(args.user):
        print("tdev token: --user is required (letters, digits and @._:- only, up to 128)", file=sys.stderr)
        return EXIT_USAGE
    roles = args.role or ["viewer"]
    bad = [r for r in roles if not ROLE_PATTERN.match(r)]
    if bad:
        print(f"tdev token: invalid role name(s): {', '.join(bad)}", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.ttl <= 86_400:
        print("tdev token: --ttl must be between 1 and 86400 seconds", file=sys.stderr)
        return EXIT_USAGE
    token, claims = _issuer(args.keys_dir).issue(args.user, roles, ttl_seconds=args.ttl)
    if args.claims:
        print(json.dumps(claims), file=sys.stderr)
    print(token)
    return EXIT_OK


def server_url(explicit: str | None = None, state: Path = Path(".tdev/serve.json")) -> str | None:
    if explicit:
        return explicit.rstrip("/")
    if not state.exists():
        return None
    return str(json.loads(state.read_text())["url"]).rstrip("/")


def _revoke(args: argparse.Namespace) -> int:
    jti, expires_at = args.jti, None
    if jti.count(".") == 2:  # a whole token: take its jti and expiry (no need to trust it to revoke it)
        import jwt

        try:
            claims = jwt.decode(jti, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            print(f"tdev token revoke: not a token: {exc}", file=sys.stderr)
            return EXIT_USAGE
        jti, expires_at = claims.get("jti"), claims.get("exp")
    if not isinstance(jti, str) or not re.match(r"^[A-Za-z0-9_-]{8,128}$", jti):
        print("tdev token revoke: give a jti (8-128 chars [A-Za-z0-9_-]) or a token", file=sys.stderr)
        return EXIT_USAGE
    url = server_url(args.url)
    if url is None:
        print(
            "tdev token revoke: no running server found (.tdev/serve.json); start `tdev serve` or pass --url",
            file=sys.stderr,
        )
        return EXIT_USAGE
    admin, _ = _issuer(args.keys_dir).issue(CLI_ADMIN, ["admin"], ttl_seconds=60)
    body = json.dumps({"jti": jti, **({"expires_at": int(expires_at)} if expires_at else {})}).encode()
    request = urllib.request.Request(
        f"{url}/v1/tokens/revoke",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(response.read().decode())
            return EXIT_OK
    except urllib.error.HTTPError as exc:
        print(f"tdev token revoke: server answered {exc.code}: {exc.read().decode()}", file=sys.stderr)
    except urllib.error.URLError as exc:
        print(f"tdev token revoke: cannot reach {url}: {exc.reason}", file=sys.stderr)
    return EXIT_FAILED
