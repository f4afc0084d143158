"""Request heads (line and headers) are bounded in size and in time (``tunelab.serve.http_protocol``).

With uvicorn's default parser a client with no key sent ten unfinished 40 MB headers and the server
held 400 MB more until they hung up; 300 half-sent heads stayed open for good. A request without a
valid key must cost a constant. A real server here: the parser is below the app.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from test_serve_app import FakePredictor, settings
from test_serve_app_cli import restore_logging  # noqa: F401 -- a fixture

from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.http_protocol import MAX_HEAD_BYTES, UVICORN_OPTIONS, BoundedH11Protocol


@pytest.fixture
def port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, str]]:
    """A real server on a free port, with a 1 s deadline for request heads; the port and a key."""
    monkeypatch.setattr(BoundedH11Protocol, "head_timeout_s", 1.0)
    served = [ServedModel("topics", "1", FakePredictor(), "runs/x")]
    app = create_app(settings(tmp_path), served, loader=FakePredictor)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=free, log_level="warning", **UVICORN_OPTIONS)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    _, token = app.state.tunelab.access.create_key("acme", rate=None, quota=None)
    try:
        yield free, token
    finally:
        server.should_exit = True
        thread.join(30)


def read_until_closed(sock: socket.socket, limit_s: float = 10.0) -> bytes:
    sock.settimeout(limit_s)
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_a_head_over_the_limit_is_refused_before_it_ends(
    port: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header is never finished: the server answers 400 and closes once the cap is passed (its
    close may reach us as a reset, the rest of what we sent unread), with no deadline involved."""
    monkeypatch.setattr(BoundedH11Protocol, "head_timeout_s", 600.0)
    with socket.create_connection(("127.0.0.1", port[0])) as sock:
        sock.settimeout(10)
        try:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * MAX_HEAD_BYTES))
            answer = read_until_closed(sock)
        except (BrokenPipeError, ConnectionResetError):
            answer = b"reset"
    assert answer.startswith(b"HTTP/1.1 400 ") or answer == b"reset", answer[:200]
    with httpx.Client(base_url=f"http://127.0.0.1:{port[0]}") as client:
        assert client.get("/healthz").status_code == 200  # the server is fine


def test_a_head_that_never_ends_gets_a_408_and_is_closed(port: tuple[int, str]) -> None:
    with socket.create_connection(("127.0.0.1", port[0])) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")  # no blank line: the head goes on
        time.sleep(0.5)
        sock.sendall(b"X-Slow: 1\r\n")  # bytes that trickle in do not extend the deadline
        answer = read_until_closed(sock)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert answer.endswith(b"the request head took too long to send")
    assert took < 8, took


def test_a_connection_that_sends_nothing_is_closed(port: tuple[int, str]) -> None:
    with socket.create_connection(("127.0.0.1", port[0])) as sock:
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")


def test_ordinary_requests_are_unchanged(port: tuple[int, str]) -> None:
    """A head under the cap, a body sent slower than the head deadline, and keep-alive requests
    on one connection past the deadline all work: only a head is timed."""
    big = "x" * (MAX_HEAD_BYTES // 2)
    with httpx.Client(base_url=f"http://127.0.0.1:{port[0]}") as client:
        assert client.get("/healthz", headers={"X-Note": big}).status_code == 200
        time.sleep(1.5)  # idle between requests: the keep-alive's business, within its 5 s
        assert client.get("/healthz").status_code == 200

    def slow_body() -> Iterator[bytes]:
        yield b'{"texts": '
        time.sleep(1.5)
        yield b'["hello"]}'

    answer: Any = httpx.post(
        f"http://127.0.0.1:{port[0]}/v1/models/topics/predict",
        content=slow_body(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {port[1]}"},
    )
    assert answer.status_code == 200, answer.text


def test_serve_runs_uvicorn_with_this_protocol(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,  # noqa: F811
) -> None:
    import signal

    import tunelab.inference
    from tunelab.cli.main import main

    given: dict[str, Any] = {}
    monkeypatch.setattr(tunelab.inference, "load", FakePredictor)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: given.update(kw))
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # leave pytest's SIGTERM handler alone
    assert main(["serve", "m=fake", "--data-dir", str(tmp_path / "data")]) == 0
    assert given["http"] is BoundedH11Protocol
    assert given["h11_max_incomplete_event_size"] == MAX_HEAD_BYTES
