"""`tdev serve`: the API on a real HTTP server on loopback, in front of the local runtime.

Each HTTP request becomes an API Gateway proxy event and goes through what API Gateway would do: the
authorizer (except /health), then the API function; state machine executions run in the background as
in `tdev run`. Tokens come from the local issuer (`tdev token`, keys in `.tdev/keys/`, generated on first
use). The server records its URL in `.tdev/serve.json` for `tdev token revoke`. Limits are the spec's:
100 requests per 15 minutes per principal, 10 on strict routes, bodies up to TDEV_MAX_BODY_BYTES.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tdev_cli.runtime import API_GATEWAY_PAYLOAD_BYTES

EXIT_OK, EXIT_USAGE = 0, 2
STATE_FILE = Path(".tdev/serve.json")


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the API on 127.0.0.1 (local issuer tokens: tdev token)")
    serve.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    serve.add_argument(
        "--keys-dir", default=".tdev/keys", help="the local issuer's keys (default .tdev/keys)"
    )
    serve.add_argument("--log-dir", default=".tdev/logs", help="where the functions' JSON logs go")
    serve.set_defaults(func=_serve)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_handler(runtime: Any, max_body_bytes: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "tdev"
        sys_version = ""

        def _handle(self) -> None:
            path = self.path.split("?", 1)[0]
            length_header = self.headers.get("Content-Length", "0") or "0"
            if not length_header.isdigit():
                return self._send(400, {"error": "ValidationError", "message": "invalid Content-Length"})
            length = int(length_header)
            if length > API_GATEWAY_PAYLOAD_BYTES:  # API Gateway's own answer, before any function runs
                self.close_connection = True
                return self._send(413, {"message": "Request Too Long"})
            if length > max_body_bytes:  # refused before reading it
                self.close_connection = True
                return self._send(
                    413,
                    {"error": "PayloadTooLarge", "message": f"request body exceeds {max_body_bytes} bytes"},
                )
            body = self.rfile.read(length).decode("utf-8", "replace") if length else None
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection")
            }
            try:
                response = runtime.http(self.command, path, headers, body, source_ip=self.client_address[0])
            except Exception as exc:  # never a stack trace to the client
                print(f"tdev serve: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
                return self._send(500, {"error": "InternalError", "message": "internal error"})
            payload = response.get("body") or ""
            if response.get("isBase64Encoded"):
                import base64

                raw = base64.b64decode(payload)
            else:
                raw = payload.encode()
            self._send_raw(int(response["statusCode"]), dict(response.get("headers") or {}), raw)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            from tdev.security.headers import SECURITY_HEADERS

            self._send_raw(
                status, {"Content-Type": "application/json", **SECURITY_HEADERS}, json.dumps(body).encode()
            )

        def _send_raw(self, status: int, headers: dict[str, str], raw: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle

        def log_message(self, format: str, *args: Any) -> None:
            print(f"{self.address_string()} {format % args}", file=sys.stderr)

    return Handler


def _serve(args: argparse.Namespace) -> int:
    if not _is_loopback(args.host):
        print(
            f"tdev serve: --host must be a loopback address (got {args.host}); this server is for local use",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not 0 <= args.port <= 65535:
        print("tdev serve: --port must be 0..65535", file=sys.stderr)
        return EXIT_USAGE
    from tdev_cli.main import _functions_output
    from tdev_cli.runtime import LocalRuntime

    os.environ.setdefault("AGNO_TELEMETRY", "false")
    with _functions_output(args.log_dir, "serve") as log_path, contextlib.ExitStack() as stack:
        runtime = stack.enter_context(LocalRuntime(keys_dir=args.keys_dir, rate_limit_default=None))
        from tdev.settings import get_settings

        try:
            server = ThreadingHTTPServer(
                (args.host, args.port), make_handler(runtime, get_settings().max_body_bytes)
            )
        except OSError as exc:
            print(f"tdev serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        stack.callback(server.server_close)
        host, port = str(server.server_address[0]), int(server.server_address[1])
        url = f"http://{host}:{port}"
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(
            json.dumps({"url": url, "pid": os.getpid(), "keys_dir": str(Path(args.keys_dir).resolve())})
        )
        stack.callback(lambda: STATE_FILE.unlink(missing_ok=True))
        print(f"tdev serve: listening on {url} (function logs: {log_path})", file=sys.stderr, flush=True)
        print(
            "  TOKEN=$(tdev token --user alice --role developer); "
            f'curl -H "Authorization: Bearer $TOKEN" {url}/v1/agents',
            file=sys.stderr,
            flush=True,
        )
        stop = threading.Event()

        def shutdown(*_: Any) -> None:
            if not stop.is_set():
                stop.set()
                threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, shutdown)
        signal.signal(signal.SIGINT, shutdown)
        server.serve_forever(poll_interval=0.2)
    print("tdev serve: stopped", file=sys.stderr)
    return EXIT_OK
