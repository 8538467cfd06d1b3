"""`tdev serve`: the API on a real HTTP server on loopback, in front of the local runtime.

Each HTTP request becomes an API Gateway proxy event and goes through what API Gateway would do: the
authorizer (except on the public routes of tdev.security.routes), then the API function; state machine
executions run in the background as in `tdev run`. Tokens come from the local issuer (`tdev token`, keys
in `.tdev/keys/`, generated on first use). The server records its URL in `.tdev/serve.json` for
`tdev token revoke`. Limits are the spec's: 100 requests per 15 minutes per principal, 10 on strict
routes, bodies up to TDEV_MAX_BODY_BYTES.

Live progress: `GET /v1/executions/{id}/events` with `Accept: text/event-stream` is streamed as server-sent
events. The stream opens with the same request through authorizer and API function as every route (401,
403, or 404 for an outsider, answered as JSON); then it follows the execution's progress log
(tdev.data.progress), each event once, `id:` its sequence number, from `Last-Event-ID` (or `?after=`)
on, and ends after the terminal event. The messaging pump delivers the bus's events meanwhile, as the
event source mappings do deployed (outbox stream -> bus -> queues -> consumers, every PUMP_SECONDS).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tdev_cli.runtime import API_GATEWAY_PAYLOAD_BYTES
from tdev_cli.seed import SCALES

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
    serve.add_argument(
        "--seed",
        dest="seed_scale",
        choices=sorted(SCALES),
        help="fill the backend with test data at this scale before serving (see `tdev seed`)",
    )
    serve.add_argument(
        "--config-poll-seconds",
        type=int,
        default=None,
        help="how often functions re-read Parameter Store (default 60, as deployed)",
    )
    serve.set_defaults(func=_serve)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


MAX_CHUNK_LINE_BYTES = 1024  # a chunk-size line or a trailer line
MAX_TRAILERS = 100
SUPPORTED = "GET, POST, PUT, DELETE, PATCH, OPTIONS"
GATEWAY_TOO_LONG = "RequestTooLong"  # over API Gateway's 10 MB: refused by the gateway itself


STREAM_PATH = re.compile(r"/v1/executions/([A-Za-z0-9-]{1,80})/events")
STREAM_POLL_SECONDS = 0.2
STREAM_KEEPALIVE_SECONDS = 15.0
STREAM_MAX_SECONDS = 900.0  # then the server closes; the client resumes from its last event id
PUMP_SECONDS = 0.3


def _sse(event: dict[str, Any]) -> bytes:
    """One server-sent event: `id` the sequence number, `event` the type, `data` the event as JSON."""
    return (
        f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event, sort_keys=True)}\n\n".encode()
    )


def _resume_from(last_event_id: str | None, query: str) -> int | None:
    """Where a stream starts: after `Last-Event-ID`, else after `?after=`, else 0; None when malformed."""
    from urllib.parse import parse_qs

    value = last_event_id if last_event_id is not None else (parse_qs(query).get("after") or ["0"])[0]
    value = value.strip()
    return int(value) if re.fullmatch(r"[0-9]{1,10}", value) else None


class Refused(Exception):
    """An HTTP-level refusal the server answers itself: (status, error, message, field)."""

    def __init__(self, status: int, error: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.field = status, error, message, field


def make_handler(
    runtime: Any, max_body_bytes: int, stop: threading.Event | None = None
) -> type[BaseHTTPRequestHandler]:
    from tdev.security.headers import error_page

    stopping = stop or threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "tdev"
        sys_version = ""
        timeout = 60  # a client that stops sending mid-request frees its thread

        def _handle(self) -> None:
            try:
                if self.request_version == "HTTP/0.9":
                    self.request_version = "HTTP/1.0"  # so the answer carries its status line and headers
                    raise Refused(400, "BadRequest", "HTTP/0.9 is not supported")
                if not self.path.startswith("/"):
                    raise Refused(400, "BadRequest", "the request target must be an absolute path", "path")
                body = self._read_body()
            except Refused as refused:
                self.close_connection = True  # what is left of the body cannot be told from a next request
                return self._refuse(refused)
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("content-length", "connection", "transfer-encoding")
            }
            route, _, query = self.path.partition("?")
            stream = STREAM_PATH.fullmatch(route)
            if self.command == "GET" and stream and "text/event-stream" in self.headers.get("Accept", ""):
                return self._stream(stream.group(1), query, headers)
            try:  # the query string stays on the path: the runtime parses it as API Gateway does
                response = runtime.http(
                    self.command, self.path, headers, body, source_ip=self.client_address[0]
                )
            except Exception as exc:  # never a stack trace to the client
                print(f"tdev serve: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
                return self._refuse(Refused(500, "InternalError", "internal error"))
            payload = response.get("body") or ""
            if response.get("isBase64Encoded"):
                import base64

                raw = base64.b64decode(payload)
            else:
                raw = payload.encode()
            self._send_raw(int(response["statusCode"]), dict(response.get("headers") or {}), raw)

        def _stream(self, execution_id: str, query: str, headers: dict[str, str]) -> None:
            """Server-sent events of the execution's progress log (see the module)."""
            import time

            from tdev.data.progress import events_after
            from tdev.settings import get_settings

            after = _resume_from(self.headers.get("Last-Event-ID"), query)
            if after is None:
                return self._refuse(
                    Refused(
                        400, "ValidationError", "Last-Event-ID must be an event id (digits)", "Last-Event-ID"
                    )
                )
            headers = {k: v for k, v in headers.items() if k.lower() not in ("accept", "last-event-id")}
            headers["Accept"] = "application/json"
            # Opened as every route is: authorizer, then the API function's RBAC and membership check.
            opened = runtime.http(
                "GET",
                f"/v1/executions/{execution_id}/events?after={after}",
                headers,
                None,
                source_ip=self.client_address[0],
            )
            status = int(opened["statusCode"])
            if status != 200:
                self._send_raw(
                    status, dict(opened.get("headers") or {}), str(opened.get("body") or "").encode()
                )
                return None
            self.close_connection = True  # the stream is the rest of this connection
            self.send_response(200)
            for name, value in (opened.get("headers") or {}).items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding", "content-type"):
                    self.send_header(name, str(value))
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            page = json.loads(opened["body"])
            started = last_write = time.monotonic()
            table = get_settings().table_name
            try:
                self.wfile.write(b"retry: 1000\n\n")
                while True:
                    for event in page["events"]:
                        self.wfile.write(_sse(event))
                        last_write = time.monotonic()
                    self.wfile.flush()
                    if page["terminal"] or stopping.is_set():
                        return None
                    now = time.monotonic()
                    if now - started > STREAM_MAX_SECONDS:
                        return None
                    if now - last_write > STREAM_KEEPALIVE_SECONDS:  # comments keep proxies from timing out
                        self.wfile.write(b": keep-alive\n\n")
                        last_write = now
                    stopping.wait(STREAM_POLL_SECONDS)
                    page = events_after(table, execution_id, int(page["last_id"]))
            except (BrokenPipeError, ConnectionResetError):  # the client went away: it resumes by its id
                return None

        def _read_body(self) -> str | None:
            """The body by Content-Length or chunked transfer coding, bounded; Refused when malformed."""
            codings = [
                c.strip().lower()
                for value in self.headers.get_all("Transfer-Encoding") or []
                for c in value.split(",")
                if c.strip()
            ]
            lengths = [v.strip() for v in self.headers.get_all("Content-Length") or []]
            if codings:
                if lengths:  # both framings at once: the classic request-smuggling shape
                    raise Refused(
                        400,
                        "BadRequest",
                        "Content-Length and Transfer-Encoding together",
                        "Transfer-Encoding",
                    )
                if codings != ["chunked"]:
                    raise Refused(
                        501, "NotImplemented", "only Transfer-Encoding: chunked", "Transfer-Encoding"
                    )
                raw = self._read_chunked()
            else:
                if len(set(lengths)) > 1:
                    raise Refused(400, "BadRequest", "conflicting Content-Length values", "Content-Length")
                value = lengths[0] if lengths else "0"
                # ASCII digits only: str.isdigit() accepts "²", which int() refuses (a dropped connection).
                if not re.fullmatch(r"[0-9]{1,18}", value):
                    raise Refused(400, "BadRequest", "Content-Length must be ASCII digits", "Content-Length")
                length = int(value)
                if length > API_GATEWAY_PAYLOAD_BYTES:  # API Gateway's own answer, before any function runs
                    raise Refused(413, GATEWAY_TOO_LONG, "Request Too Long")
                if length > max_body_bytes:  # refused before reading it
                    raise Refused(
                        413, "PayloadTooLarge", f"request body exceeds {max_body_bytes} bytes", "body"
                    )
                raw = self.rfile.read(length) if length else b""
                if len(raw) < length:
                    raise Refused(400, "BadRequest", "the body is shorter than Content-Length", "body")
            if not raw:
                return None
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise Refused(400, "ValidationError", "body is not UTF-8 text", "body") from None

        def _line(self) -> bytes:
            line = self.rfile.readline(MAX_CHUNK_LINE_BYTES + 1)
            if len(line) > MAX_CHUNK_LINE_BYTES or not line.endswith(b"\n"):
                raise Refused(400, "BadRequest", "malformed chunked body", "Transfer-Encoding")
            return line

        def _read_chunked(self) -> bytes:
            parts, total = [], 0
            while True:
                size_text = self._line().split(b";", 1)[0].strip()  # chunk extensions are ignored
                if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size_text):
                    raise Refused(400, "BadRequest", "malformed chunk size", "Transfer-Encoding")
                size = int(size_text, 16)
                if size == 0:
                    break
                total += size
                if total > max_body_bytes:
                    raise Refused(
                        413, "PayloadTooLarge", f"request body exceeds {max_body_bytes} bytes", "body"
                    )
                chunk = self.rfile.read(size)
                if len(chunk) < size or self._line().strip():
                    raise Refused(400, "BadRequest", "malformed chunked body", "Transfer-Encoding")
                parts.append(chunk)
            for _ in range(MAX_TRAILERS):  # trailers are read and dropped, up to the empty line
                if not self._line().strip():
                    return b"".join(parts)
            raise Refused(431, "RequestHeaderFieldsTooLarge", "too many trailer fields", "Transfer-Encoding")

        def _refuse(self, refused: Refused) -> None:
            headers, raw = error_page(refused.status, refused.error, refused.message, refused.field)
            if refused.error == GATEWAY_TOO_LONG:  # API Gateway's default body for it: {"message": ...}
                raw = json.dumps({"message": refused.message}).encode()
            if refused.status == 405:
                headers["Allow"] = SUPPORTED
            self._send_raw(refused.status, headers, raw)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """http.server's own refusals (400 bad request line, 414, 431, 501 ...) as JSON, with the
            security headers, like every other answer."""
            from http import HTTPStatus

            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "Error"
            self.log_error("code %d, message %s", code, message)
            self.close_connection = True
            if self.request_version == "HTTP/0.9":
                self.request_version = "HTTP/1.0"
            self._refuse(Refused(code, "".join(phrase.title().split()), message or phrase))

        def _send_raw(self, status: int, headers: dict[str, str], raw: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(raw)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)

        def _not_allowed(self) -> None:
            self.close_connection = True  # any body was not read
            self._refuse(Refused(405, "MethodNotAllowed", f"method {self.command} is not supported"))

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle
        do_HEAD = do_TRACE = do_CONNECT = _not_allowed

        def log_message(self, format: str, *args: Any) -> None:
            # The request line is the client's: escaped and bounded before it reaches the terminal.
            from tdev.security.inputs import bounded

            print(f"{self.address_string()} {bounded(format % args, 300)}", file=sys.stderr)

    return Handler


def _pump_messaging(runtime: Any, stop: threading.Event) -> None:
    """What Lambda's event source mappings do deployed: deliver the outbox's events to the bus and the
    queues' messages to their consumers (the progress log among them), until the server stops."""
    while not stop.wait(PUMP_SECONDS):
        try:
            runtime.drain_messaging()
        except Exception as exc:  # a failing consumer leaves its message on its queue; keep pumping
            print(f"tdev serve: messaging: {type(exc).__name__}: {exc}", file=sys.stderr)


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
    from tdev_cli.function_logs import functions_output
    from tdev_cli.runtime import LocalRuntime

    os.environ.setdefault("AGNO_TELEMETRY", "false")
    with functions_output(args.log_dir, "serve") as log_path, contextlib.ExitStack() as stack:
        runtime = stack.enter_context(
            LocalRuntime(
                keys_dir=args.keys_dir, rate_limit_default=None, config_poll_seconds=args.config_poll_seconds
            )
        )
        if args.seed_scale:
            from tdev_cli import testdata
            from tdev_cli.seed import dataset_at

            dataset = dataset_at(args.seed_scale)
            timings = testdata.load(dataset)
            print(
                f"tdev serve: seeded {args.seed_scale}: {len(dataset.projects)} projects, "
                f"{len(dataset.executions)} executions in {timings.projects_s + timings.executions_s:.0f} s "
                f"(users are user-00000...; e.g. tdev token --user {dataset.projects[0].owner})",
                file=sys.stderr,
                flush=True,
            )
        from tdev.settings import get_settings

        stop = threading.Event()
        try:
            server = ThreadingHTTPServer(
                (args.host, args.port), make_handler(runtime, get_settings().max_body_bytes, stop)
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
        pump = threading.Thread(target=_pump_messaging, args=(runtime, stop), daemon=True)
        pump.start()
        stack.callback(pump.join, 30)  # a delivery in progress ends before the runtime goes
        stack.callback(stop.set)

        def shutdown(*_: Any) -> None:
            if not stop.is_set():
                stop.set()
                threading.Thread(target=server.shutdown, daemon=True).start()

        def deliver_alerts() -> None:
            """EventBridge's Lambda target for the alert rules, every second (tdev.alerts)."""
            while not stop.wait(1.0):
                try:
                    runtime.deliver_alerts()
                except Exception as exc:
                    print(f"tdev serve: alert intake failed: {exc}", file=sys.stderr, flush=True)

        threading.Thread(target=deliver_alerts, name="alert-intake", daemon=True).start()
        signal.signal(signal.SIGTERM, shutdown)
        signal.signal(signal.SIGINT, shutdown)
        server.serve_forever(poll_interval=0.2)
    print("tdev serve: stopped", file=sys.stderr)
    return EXIT_OK
