"""``--handoff-webhook``: each new ticket POSTed to a local HTTP server that fails its first attempts,
retried with back-off, delivered once, and resumed after a restart from the store's outbox."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from test_serve_app import settings
from test_serve_support import Api, FakeBot
from webhook_receiver import Receiver as SharedReceiver

from tunelab.serve.app import create_app

SECRET = "s3cret"


def ticket_id(body: bytes, headers: Any) -> str:
    """A hand-off POST is told apart by the ticket id in its body (not by the header under test)."""
    return str(json.loads(body)["ticket"]["id"])


class Receiver(SharedReceiver):
    """The shared webhook endpoint (tests/unit/webhook_receiver.py): tickets, told apart by ticket id."""

    def __init__(self, fail: int = 0) -> None:
        super().__init__(fail, path="/hooks/tickets", key_of=ticket_id)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=2)
    yield r
    r.close()


def fast(**overrides: Any) -> dict[str, Any]:
    """Webhook settings that retry within a test's patience."""
    return {"webhook_backoff_s": 0.05, "webhook_poll_s": 0.1, "webhook_secret": SECRET, **overrides}


@contextmanager
def serving(data_dir: Path, **overrides: Any) -> Iterator[Api]:
    app = create_app(settings(data_dir, **overrides), bots=[FakeBot()])
    with TestClient(app, raise_server_exceptions=False) as client:
        access, run = app.state.tunelab.access, uuid.uuid4().hex[:6]  # new keys per start: same store
        _, token = access.create_key(f"acme-{run}", rate=None, quota=None)
        _, admin = access.create_key(f"root-{run}", rate=None, quota=None, admin=True)
        yield Api(client, app, token, admin)


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_each_ticket_is_delivered_once_after_failed_attempts(tmp_path: Path, receiver: Receiver) -> None:
    with serving(tmp_path, handoff_webhook=receiver.url, **fast()) as api:
        assert api.get("").json()["webhook"] is True
        first = api.say("hello?", conv="c1").json()["handoff_id"]
        second = api.say("anyone there?", conv="c2").json()["handoff_id"]
        assert api.say("my card").json()["handoff_id"] is None  # an answer: nothing to deliver
        wait_for(lambda: sorted(receiver.accepted()) == sorted([first, second]))
        time.sleep(0.5)  # several polls later: nothing is sent again
        outbox = {row["ticket_id"]: row for row in api.state.store.outbox()}
        metrics = api.metrics()
        ticket = api.get(f"/tickets/{first}").json()
    assert sorted(receiver.accepted()) == sorted([first, second])
    assert [p["status"] for p in receiver.posts if p["key"] == first] == [500, 500, 204]
    assert all(row["delivered_at"] and row["attempts"] == 3 for row in outbox.values())
    assert 'tunelab_webhook_deliveries_total{outcome="delivered"} 2.0' in metrics
    assert 'tunelab_webhook_deliveries_total{outcome="failed"} 4.0' in metrics
    post = next(p for p in receiver.posts if p["key"] == first and p["status"] == 204)
    body = json.loads(post["body"])
    assert body["event"] == "ticket.created" and body["attempt"] == 3
    assert body["ticket"] == ticket  # what agents see
    assert post["headers"]["Idempotency-Key"] == first
    expected = "sha256=" + hmac.new(SECRET.encode(), post["body"], hashlib.sha256).hexdigest()
    assert post["headers"]["X-Tunelab-Signature"] == expected


def test_the_outbox_survives_a_restart_and_is_not_delivered_twice(tmp_path: Path) -> None:
    # First run: the desk is down (nothing listens there) and retries are an hour apart.
    down = Receiver()
    dead_url = down.url
    down.close()
    with serving(tmp_path, handoff_webhook=dead_url, **fast(webhook_backoff_s=3600)) as api:
        tid = api.say("hello?").json()["handoff_id"]
        wait_for(lambda: api.state.store.outbox()[0]["last_error"] is not None)
    (row,) = _outbox(tmp_path)
    assert row["delivered_at"] is None and row["attempts"] == 1
    # Second run, an hour later as far as the worker knows: it delivers what the first left.
    up = Receiver()
    try:
        with serving(tmp_path, handoff_webhook=up.url, **fast()) as api:
            worker = api.state.webhook
            real_now = worker.now
            worker.now = lambda: real_now() + timedelta(hours=2)
            wait_for(lambda: up.accepted() == [tid])
        with serving(tmp_path, handoff_webhook=up.url, **fast()):  # a third start sends nothing
            time.sleep(0.5)
        assert up.accepted() == [tid] and len(up.posts) == 1
        (row,) = _outbox(tmp_path)
        assert row["delivered_at"] is not None and row["attempts"] == 2
    finally:
        up.close()


def _outbox(data_dir: Path) -> list[dict[str, Any]]:
    from tunelab.serve.store import open_store

    with open_store(None, data_dir) as store:
        return store.outbox()


def test_delivery_is_given_up_after_the_last_attempt_and_the_ticket_stays_open(tmp_path: Path) -> None:
    always = Receiver(fail=10**6)
    try:
        with serving(tmp_path, handoff_webhook=always.url, **fast(webhook_max_attempts=3)) as api:
            tid = api.say("hello?").json()["handoff_id"]
            wait_for(lambda: api.state.store.outbox()[0]["gave_up_at"] is not None)
            time.sleep(0.4)
            assert 'tunelab_webhook_deliveries_total{outcome="gave_up"} 1.0' in api.metrics()
            assert api.get(f"/tickets/{tid}").json()["status"] == "open"
        assert len(always.posts) == 3
        assert "HTTP 500" in _outbox(tmp_path)[0]["last_error"]
    finally:
        always.close()


def test_without_a_webhook_no_outbox_rows_are_written(tmp_path: Path) -> None:
    with serving(tmp_path) as api:
        api.say("hello?")
        assert api.state.webhook is None and api.state.store.outbox() == []


@pytest.mark.parametrize("url", ["ftp://desk.example.com/x", "desk.example.com/hook", "http:///nohost"])
def test_a_webhook_url_must_be_http(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValidationError, match="not an http"):
        settings(tmp_path, handoff_webhook=url)


def test_backoff_doubles_up_to_the_cap() -> None:
    """The delays a failing ticket waits: base, 2x, 4x ... capped, as the worker computes them."""
    import asyncio
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from tunelab.serve.webhook import WebhookWorker

    now = datetime(2026, 11, 15, tzinfo=UTC)
    calls: list[Any] = []
    store = SimpleNamespace(mark_failed=lambda tid, **kw: calls.append(kw))
    cfg = SimpleNamespace(
        handoff_webhook="http://x/",
        webhook_secret=None,
        webhook_timeout_s=1.0,
        webhook_backoff_s=2.0,
        webhook_max_backoff_s=10.0,
        webhook_max_attempts=6,
        webhook_poll_s=5.0,
    )
    worker = WebhookWorker(store, cfg, now=lambda: now)
    for attempt in range(1, 7):
        asyncio.run(worker._failed("tk_1", attempt, "HTTP 500"))
    delays = [(c["retry_at"] - now).total_seconds() if c["retry_at"] else None for c in calls]
    assert delays == [2.0, 4.0, 8.0, 10.0, 10.0, None]  # the sixth attempt was the last


def test_two_workers_on_one_store_never_post_a_ticket_twice_behind_slow_posts(tmp_path: Path) -> None:
    """Review finding 8: a worker leasing 10 rows up front, with a receiver taking 9 s per POST,
    held rows 4-10 past their 30 s lease while they waited, and a second server on the same
    database leased and POSTed them too. Each row is now leased just before its POST."""
    import asyncio
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from tunelab.serve.store import open_store
    from tunelab.serve.store.support import Ticket, Turn
    from tunelab.serve.webhook import WebhookWorker

    store = open_store(str(tmp_path / "t.db"), tmp_path)
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    clock = {"now": t0}
    for i in range(10):
        turn = Turn("bank", "k", f"c{i}", "help", "r", "handoff", None, t0, t0 + timedelta(hours=1))
        tk = Ticket(f"tk_{i}", "bank", "k", f"c{i}", "help", [], "why", [], "open", t0, t0)
        store.add_turn(turn, ticket=tk, outbox=True)
    cfg = SimpleNamespace(
        handoff_webhook="http://desk.example/hook",
        webhook_secret=None,
        webhook_timeout_s=10.0,
        webhook_backoff_s=2.0,
        webhook_max_backoff_s=60.0,
        webhook_max_attempts=5,
        webhook_poll_s=5.0,
    )
    posted: list[tuple[str, str]] = []

    def slow_post(worker: str, seconds: float) -> Callable[..., int]:
        def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
            posted.append((worker, headers["Idempotency-Key"]))
            clock["now"] += timedelta(seconds=seconds)  # the receiver's answer time, under the timeout
            if len(posted) == 4:  # a second server on the same database polls now, during this POST
                asyncio.run(second.run_once())
            return 200

        return post

    first = WebhookWorker(store, cfg, now=lambda: clock["now"], post=slow_post("first", 9))
    # The second's POSTs run inside the first's 4th on this one clock: 1 s each keeps that POST
    # (9 s + the second's 6 s) within its own lease, as a real POST is.
    second = WebhookWorker(store, cfg, now=lambda: clock["now"], post=slow_post("second", 1))
    assert first.lease_s < 10 * 9  # a batch's POSTs outlast one lease
    while asyncio.run(first.run_once()):
        pass
    keys = [key for _, key in posted]
    assert sorted(keys) == sorted(f"tk_{i}" for i in range(10))  # each ticket POSTed once
    assert {w for w, _ in posted} == {"first", "second"}  # both servers delivered some
    assert all(row["delivered_at"] is not None and row["attempts"] == 1 for row in store.outbox())
    store.close()


def test_a_webhook_url_with_credentials_posts_them_as_basic_auth() -> None:
    """urllib took ``user:password@`` for part of the host: every attempt failed "Name or service
    not known" and each ticket was given up, though settings accepted the URL."""
    import base64

    from webhook_receiver import Receiver

    from tunelab.serve.webhook import post_json

    receiver = Receiver()
    try:
        with_user = receiver.url.replace("http://", "http://desk:s%40cret@")
        assert post_json(with_user, b"{}", {"Content-Type": "application/json"}, 5) == 204
        sent = receiver.posts[-1]["headers"]
        assert sent["Authorization"] == "Basic " + base64.b64encode(b"desk:s@cret").decode()
        # an Authorization the caller set wins; the credentials still leave the host name
        assert post_json(with_user, b"{}", {"Authorization": "Bearer t", "Idempotency-Key": "k"}, 5) == 204
        assert receiver.posts[-1]["headers"]["Authorization"] == "Bearer t"
    finally:
        receiver.close()
