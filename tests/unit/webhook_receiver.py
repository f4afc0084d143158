"""A local webhook endpoint for the service's webhook tests (hand-off tickets, monitor alerts)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def idempotency_key(body: bytes, headers: Any) -> str:
    return str(headers["Idempotency-Key"])


class Receiver:
    """Answers 500 to the first ``fail`` POSTs of each item, then 204, and records every POST.

    An item is told apart by ``key_of(body, headers)`` (default: the ``Idempotency-Key`` header);
    each POST is recorded as ``{"key", "status", "headers", "body"}``, then answered after
    ``delay_s`` seconds (0: at once), for a receiver that is slow to acknowledge.
    """

    delay_s: float = 0.0

    def __init__(
        self, fail: int = 0, *, path: str = "/hooks", key_of: Callable[[bytes, Any], str] = idempotency_key
    ) -> None:
        self.fail = fail
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = key_of(body, self.headers)
                with receiver.lock:
                    tries = sum(1 for p in receiver.posts if p["key"] == key)
                    status = 500 if tries < receiver.fail else 204
                    receiver.posts.append(
                        {"key": key, "status": status, "headers": dict(self.headers), "body": body}
                    )
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def accepted(self) -> list[str]:
        with self.lock:
            return [p["key"] for p in self.posts if p["status"] == 204]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
