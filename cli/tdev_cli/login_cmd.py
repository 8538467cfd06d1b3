"""`tdev login`: where a deployed API (or `tdev serve`) is, and how to authenticate to it.

    tdev login --api https://abc.execute-api.eu-west-1.amazonaws.com/prod --token-stdin < token.txt
    tdev login --api http://127.0.0.1:8080 --token "$(tdev token --user alice)" --profile local
    tdev login --api URL --api-key-stdin [--signing-secret-stdin]      # an API key (one line each)
    tdev run "..." --profile local          # or --api URL with TDEV_TOKEN / TDEV_API_KEY set

Profiles live in `$XDG_CONFIG_HOME/tdev/credentials.json` (default `~/.config/tdev/`), the folder 0700 and
the file 0600, written atomically. `login` checks the credentials with one authenticated call before it
stores them. A JWT is stored as given: when it expires, log in again with a fresh one (Cognito's hosted UI
and device flows are not built).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_PROFILE = "default"


def credentials_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tdev" / "credentials.json"


def load_profiles(path: Path | None = None) -> dict[str, dict[str, str]]:
    path = path or credentials_file()
    if not path.exists():
        return {}
    mode = path.stat().st_mode & 0o077
    if mode:
        raise PermissionError(
            f"{path} is readable by others (mode {oct(path.stat().st_mode & 0o777)}); chmod 600 it"
        )
    return dict(json.loads(path.read_text()))


def save_profile(name: str, profile: dict[str, str], path: Path | None = None) -> Path:
    path = path or credentials_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    profiles = load_profiles(path)
    profiles[name] = profile
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".credentials-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(profiles, handle, indent=2)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def client_for(api: str | None, profile: str | None) -> Any:
    """A Client from --api (credentials from TDEV_TOKEN / TDEV_API_KEY / TDEV_SIGNING_SECRET) or a profile."""
    from tdev_cli.client import Client

    if api:
        return Client(
            api,
            token=os.environ.get("TDEV_TOKEN"),
            api_key=os.environ.get("TDEV_API_KEY"),
            signing_secret=os.environ.get("TDEV_SIGNING_SECRET"),
        )
    name = profile or DEFAULT_PROFILE
    profiles = load_profiles()
    if name not in profiles:
        raise LookupError(
            f"no profile {name!r} in {credentials_file()}: run `tdev login --api URL ...` first"
        )
    stored = profiles[name]
    return Client(
        stored["api"],
        token=stored.get("token"),
        api_key=stored.get("api_key"),
        signing_secret=stored.get("signing_secret"),
    )


def register(commands: Any) -> None:
    login = commands.add_parser(
        "login", help="store the URL and credentials of a deployed API (or tdev serve)"
    )
    login.add_argument("--api", required=True, help="the API's base URL, e.g. https://.../prod")
    login.add_argument("--profile", default=DEFAULT_PROFILE, help="profile name (default: default)")
    secret = login.add_mutually_exclusive_group(required=True)
    secret.add_argument("--token", help="a JWT (prefer --token-stdin: arguments are visible to other users)")
    secret.add_argument("--token-stdin", action="store_true", help="read the JWT from standard input")
    secret.add_argument("--api-key-stdin", action="store_true", help="read an API key from standard input")
    login.add_argument(
        "--signing-secret-stdin",
        action="store_true",
        help="then read the API key's signing secret (2nd line)",
    )
    login.set_defaults(func=_login)


def _login(args: argparse.Namespace) -> int:
    import httpx

    from tdev_cli.client import ApiError, Client

    lines = iter(sys.stdin.read().splitlines()) if (args.token_stdin or args.api_key_stdin) else iter(())
    profile: dict[str, str] = {"api": args.api.rstrip("/")}
    if args.token or args.token_stdin:
        profile["token"] = (args.token or next(lines, "")).strip()
    else:
        profile["api_key"] = next(lines, "").strip()
        if args.signing_secret_stdin:
            profile["signing_secret"] = next(lines, "").strip()
    if not (profile.get("token") or profile.get("api_key")):
        print("tdev login: no credential was given", file=sys.stderr)
        return EXIT_USAGE
    try:
        with Client(
            profile["api"],
            token=profile.get("token"),
            api_key=profile.get("api_key"),
            signing_secret=profile.get("signing_secret"),
            max_retries=1,
        ) as client:
            health = client.health()
            agents = client.agents()  # one authenticated call: the credentials work
    except ValueError as exc:
        print(f"tdev login: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:
        print(f"tdev login: {args.api} refused the credentials: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (OSError, httpx.HTTPError) as exc:
        print(f"tdev login: cannot reach {args.api}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    path = save_profile(args.profile, profile)
    version = health.get("version", "")
    print(
        f"logged in to {profile['api']} {version}".rstrip()
        + f" as profile {args.profile!r} ({len(agents)} agents visible); saved in {path}"
    )
    return EXIT_OK
