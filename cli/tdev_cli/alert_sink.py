"""A local alert sink: a tiny HTTP receiver on 127.0.0.1 that records every notification POSTed to it.

The local runtime points the alert channels' secret (webhook, Slack, PagerDuty) at it, so the whole alert
path runs locally and tests can read what each channel received (`received`), signatures included. A path
under `/fail/` answers 500: a failing channel, on purpose."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class AlertSink:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(min(length, 1_000_000))
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with sink._lock:
                    sink.received.append(
                        {"path": self.path, "headers": dict(self.headers.items()), "body": body, "raw": raw}
                    )
                status = 500 if self.path.startswith("/fail/") else 202
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="alert-sink", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> AlertSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def on(self, path: str) -> list[dict[str, Any]]:
        """What arrived at one path (`/webhook`, `/slack`, `/pagerduty`), in order."""
        with self._lock:
            return [r for r in self.received if r["path"] == path]
