"""`tdev session ...`: long-lived sessions on a local backend that outlives the commands using it.

A session spans many commands (and survives a crashed one), so its state cannot live in one command's
in-process emulation. `tdev session backend` runs the local runtime (moto with our handlers, the ASL
interpreter, a real redis-server) and serves it on 127.0.0.1 through moto's server; it writes the
connection settings to `.tdev/backend.json`. Every other command (and `tdev run --session ID`) is a
client: it runs the API handler in its own process against that backend, exactly as a Lambda
function talks to AWS. The backend also plays EventBridge's part for the sweeper (every `--sweep-every`
seconds), so a session whose worker dies is recovered by the sweeper, not by the dead worker.

    tdev session backend &                       # keep it running
    tdev session open --user ann --project todo --budget 0.50
    tdev session chat ses-... "Design a REST API for todo items" "write unit tests for it"
    tdev session checkpoint ses-...
    tdev run --session ses-... "Implement the todo API with unit tests"
    tdev session show ses-...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tdev_cli.exit_codes import EXIT_BUDGET_EXCEEDED, EXIT_FAILED, EXIT_OK, EXIT_USAGE

STATE_FILE = Path(".tdev") / "backend.json"


def register(commands: Any) -> None:
    session = commands.add_parser("session", help="long-lived sessions: open, chat, checkpoint, resume ...")
    session.add_argument("--state-file", default=str(STATE_FILE), help="the backend's connection settings")
    sub = session.add_subparsers(dest="session_command", required=True)

    backend = sub.add_parser("backend", help="run the local backend (AWS emulation + Redis) until stopped")
    backend.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    backend.add_argument("--sweep-every", type=float, default=60.0, help="seconds between sweeper runs")

    opened = sub.add_parser("open", help="open a session")
    opened.add_argument("--user", required=True)
    opened.add_argument("--project", default="default")
    opened.add_argument("--agents", help="comma-separated agent names (default: all)")
    opened.add_argument("--idle-timeout", type=int, default=1800)
    opened.add_argument(
        "--budget",
        type=float,
        help="USD the session's chat turns may spend on models (default: the deployment's default budget)",
    )

    for name, text in (
        ("show", "show a session (status, counters, checkpoints, history)"),
        ("checkpoint", "write a manual checkpoint"),
        ("pause", "pause a session (checkpointed)"),
        ("resume", "resume a paused session from its latest valid checkpoint"),
        ("terminate", "terminate a session"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("session_id")
        command.add_argument("--json", action="store_true")

    chat = sub.add_parser("chat", help="send messages (arguments, or one per line on stdin)")
    chat.add_argument("session_id")
    chat.add_argument("messages", nargs="*")

    remember = sub.add_parser("remember", help="store a fact in the session's memory")
    remember.add_argument("session_id")
    remember.add_argument("content")
    remember.add_argument("--importance", type=float, default=0.5)
    remember.add_argument("--critical", action="store_true")

    sub.add_parser("sweep", help="run the sweeper once now (what the schedule does)")
    session.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.session_command == "backend":
        return run_backend(Path(args.state_file), args.port, args.sweep_every)
    try:
        client = BackendClient.connect(Path(args.state_file))
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    from tdev_cli.function_logs import functions_output

    global _out
    _out = sys.stdout  # the functions' logs and metrics go to a file; answers to the terminal
    with functions_output(".tdev/logs", "session"), client:
        return _client_command(client, args)


_out: Any = sys.stdout


def _say(*parts: Any, **kwargs: Any) -> None:
    print(*parts, file=_out, flush=True, **kwargs)


# ------------------------------------------------------------------------------------------ backend
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalBackend:
    """The local runtime, served on 127.0.0.1 for other processes, with a periodic sweeper."""

    def __init__(self, port: int = 0, sweep_every: float = 60.0) -> None:
        self.port = port or _free_port()
        self.sweep_every = sweep_every
        self._stop = threading.Event()
        self._stack: list[Any] = []

    def __enter__(self) -> LocalBackend:
        from moto.server import ThreadedMotoServer

        from tdev_cli.runtime import LocalRuntime

        self.runtime = LocalRuntime()
        self.runtime.__enter__()
        self._stack.append(lambda: self.runtime.__exit__(None, None, None))
        # The server shares this process's emulated backends: what the runtime created is what it serves.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        self._stack.append(server.stop)
        sweeper = threading.Thread(target=self._sweep_loop, daemon=True, name="session-sweeper")
        sweeper.start()
        self._stack.append(self._stop.set)
        return self

    def settings(self) -> dict[str, str]:
        names = (
            "TABLE_NAME",
            "STATE_MACHINE_ARN",
            "TDEV_DEFAULT_MODEL",
            "REDIS_URL",
            "KMS_KEY_ID",
            "CHECKPOINT_BUCKET",
            "AWS_DEFAULT_REGION",
            # The local issuer (the API's authorizer accepts its tokens) and the application rate limit.
            "TDEV_JWT_ISSUER",
            "TDEV_JWT_AUDIENCE",
            "TDEV_JWKS_URL",
            "TDEV_JWT_ROLES_CLAIM",
            "TDEV_RATE_LIMIT_DEFAULT",
        )
        values = {name: os.environ[name] for name in names if name in os.environ}
        values["TDEV_LOCAL_KEYS_DIR"] = str(self.runtime.keys_dir)
        values["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{self.port}"
        return values

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.sweep_every):
            try:
                self.sweep()
            except Exception as exc:  # a failed sweep is retried at the next tick, as a schedule would
                print(f"sweep failed: {exc}", file=sys.stderr)

    def sweep(self) -> dict[str, Any]:
        event = {"detail-type": "Scheduled Event", "source": "aws.events", "time": time.strftime("%FT%TZ")}
        return dict(self.runtime.invoke("session_sweeper", event))

    def __exit__(self, *exc: object) -> None:
        while self._stack:
            self._stack.pop()()


def run_backend(state_file: Path, port: int, sweep_every: float) -> int:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    from tdev_cli.function_logs import functions_output

    with functions_output(".tdev/logs", "backend"), LocalBackend(port, sweep_every) as backend:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(backend.settings(), indent=2))
        print(
            f"backend on 127.0.0.1:{backend.port}; settings in {state_file}; Ctrl-C stops it",
            file=sys.__stdout__,
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    state_file.unlink(missing_ok=True)
    return EXIT_OK


# ------------------------------------------------------------------------------------------- client
def _client_class() -> type:
    from tdev_cli.runtime import LocalRuntime

    class Client(LocalRuntime):
        """A LocalRuntime whose AWS is the running backend (over HTTP), not an in-process emulation."""

        def __init__(self, settings: dict[str, str]) -> None:
            super().__init__(redis_url=settings["REDIS_URL"])
            # The operator of a local backend administers it: sessions of any --user are theirs to act on.
            self.as_principal("local-admin", ("admin",))
            self.backend_settings = settings
            self.state_machine_arn = settings["STATE_MACHINE_ARN"]

        def __enter__(self) -> Any:
            env = {
                **self.backend_settings,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_REGION": self.backend_settings["AWS_DEFAULT_REGION"],
                "POWERTOOLS_TRACE_DISABLED": "true",
                "AGNO_TELEMETRY": "false",
                "TDEV_ENV": "local",
            }
            for key, value in env.items():
                self._saved_env[key] = os.environ.get(key)
                os.environ[key] = value
            from tdev.security.issuer import LocalIssuer

            self.keys_dir = Path(self.backend_settings["TDEV_LOCAL_KEYS_DIR"])
            self.issuer = LocalIssuer(self.keys_dir)
            from tdev import container

            container.reset()
            return self

    return Client


class BackendClient:
    @staticmethod
    def connect(state_file: Path) -> Any:
        if not state_file.exists():
            raise RuntimeError(
                f"no local backend: {state_file} does not exist. Start one with `tdev session backend` "
                "(it keeps sessions alive between commands)."
            )
        settings = json.loads(state_file.read_text())
        endpoint = settings["AWS_ENDPOINT_URL"]
        host, port = endpoint.removeprefix("http://").split(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except OSError as exc:
            raise RuntimeError(
                f"the local backend at {endpoint} is not answering ({exc}): start `tdev session backend`"
            ) from exc
        return _client_class()(settings)


def _print(data: Any, as_json: bool) -> None:
    if as_json:
        _say(json.dumps(data, indent=2, default=str))
        return
    for key, value in data.items():
        if key in ("checkpoint_list", "history"):
            continue
        _say(f"{key:>20}: {value}")
    for checkpoint in data.get("checkpoint_list", []):
        _say(
            f"{'checkpoint':>20}: {checkpoint['checkpoint_id']} {checkpoint['kind']:<8} {checkpoint['size']}"
        )
    for message in data.get("history", []):
        _say(f"  [{message['role']}/{message['agent']}] {message['text'][:100]}")


def _heartbeat_thread(client: Any, session_id: str, stop: threading.Event) -> threading.Thread:
    from tdev.sessions.service import service

    interval = service().heartbeats.interval_seconds

    def beat() -> None:
        while not stop.wait(interval):
            try:
                service().heartbeats.beat(session_id, worker=f"cli-{os.getpid()}")
            except Exception as exc:
                print(f"heartbeat failed: {exc}", file=sys.stderr)

    thread = threading.Thread(target=beat, daemon=True, name="heartbeat")
    thread.start()
    return thread


def _client_command(client: Any, args: argparse.Namespace) -> int:
    command = args.session_command
    if command == "open":
        body: dict[str, Any] = {
            "user_id": args.user,
            "project_id": args.project,
            "idle_timeout_seconds": args.idle_timeout,
        }
        if args.agents:
            body["agents"] = [a.strip() for a in args.agents.split(",") if a.strip()]
        if args.budget is not None:
            body["budget_usd"] = args.budget
        status, view = client.api("POST", "/v1/sessions", body)
        return _answer(status, view, 201, lambda: _say(view["session_id"]))
    if command == "sweep":
        from tdev.sessions.service import service

        _say(json.dumps(service().sweep()))
        return EXIT_OK
    sid = args.session_id
    if command == "show":
        status, view = client.api("GET", f"/v1/sessions/{sid}")
        if status == 200:
            from tdev.sessions.service import service

            items = service().chats.message_items(view["user_id"], sid)
            view["history"] = [
                {
                    "role": i["role"],
                    "agent": i["agent_id"],
                    "text": json.loads(i["content"])[0].get("text", ""),
                }
                for i in items
            ]
            space = service().workspace(sid) if view["status"] in ("active", "paused") else None
            if space is not None:
                view["memory_items"] = len(space.memory.working)
                view["context_entries"] = len(space.context)
                view["restored_from"] = space.restored_from
        return _answer(status, view, 200, lambda: _print(view, args.json))
    if command in ("pause", "resume", "terminate"):
        status, view = client.api("POST", f"/v1/sessions/{sid}/{command}")
        return _answer(status, view, 200, lambda: _print(view, args.json))
    if command == "checkpoint":
        status, view = client.api("POST", f"/v1/sessions/{sid}/checkpoints", {"kind": "manual"})
        return _answer(status, view, 201, lambda: _print(view, args.json))
    if command == "remember":
        status, view = client.api(
            "POST",
            f"/v1/sessions/{sid}/memory",
            {"content": args.content, "importance": args.importance, "critical": args.critical},
        )
        return _answer(status, view, 200, lambda: _say(view["item_id"]))
    # chat: the worker holding the session beats while it lives; a killed one stops beating.
    messages = args.messages or (line.strip() for line in sys.stdin)
    stop = threading.Event()
    _heartbeat_thread(client, sid, stop)
    try:
        for text in messages:
            if not text:
                continue
            status, answer = client.api("POST", f"/v1/sessions/{sid}/messages", {"text": text})
            if status != 200:
                return _answer(status, answer, 200, lambda: None)
            _say(f"[{answer['agent']}] {answer['answer'][:300]}")
    finally:
        stop.set()
    return EXIT_OK


def _answer(status: int, body: Any, expected: int, show: Any) -> int:
    if status == expected:
        show()
        return EXIT_OK
    print(f"error {status}: {body.get('message') if isinstance(body, dict) else body}", file=sys.stderr)
    if status == 402:  # a budget refused the turn's model call: the exit code `tdev run` uses for it
        return EXIT_BUDGET_EXCEEDED
    return EXIT_USAGE if 400 <= status < 500 else EXIT_FAILED
