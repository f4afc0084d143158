"""Monitor alerts to a webhook: a local HTTP server that fails the first attempts, retries with
back-off, the alert id as Idempotency-Key, nothing lost while the webhook is down (a restart
delivers what is pending), from ``tunelab serve --monitor`` and from ``tunelab app monitor run``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_monitor_app import calm_and_surge, classifier, cli_args, write_jsonl
from test_serve_app import settings
from test_serve_monitor import DEFAULTS, Api, CountingClassifier, monitor_config
from webhook_receiver import Receiver as SharedReceiver

from tunelab.apps.monitor import open_monitor_store
from tunelab.apps.monitor.webhook import AlertTarget, AlertWebhook
from tunelab.cli import monitor_cmd
from tunelab.serve.app import create_app

SECRET = "s3cret"


class Receiver(SharedReceiver):
    """The shared webhook endpoint (tests/unit/webhook_receiver.py): alerts, told apart by Idempotency-Key."""

    def __init__(self, fail: int = 0) -> None:
        super().__init__(fail, path="/hooks/alerts")


def dead_url() -> str:
    """A URL nothing listens on (a receiver started and closed)."""
    down = Receiver()
    down.close()
    return down.url


def fast(**overrides: Any) -> dict[str, Any]:
    return {
        "webhook_backoff_s": 0.05,
        "webhook_poll_s": 0.1,
        "webhook_secret": SECRET,
        **DEFAULTS,
        **overrides,
    }


@contextmanager
def serving(tmp_path: Path, data_dir: Path, *, webhook: str | None = None, **overrides: Any) -> Iterator[Api]:
    cfg = monitor_config(tmp_path, **({"webhook": webhook} if webhook else {}))
    app = create_app(settings(data_dir, **fast(**overrides)), monitors=[(cfg, CountingClassifier())])
    with TestClient(app, raise_server_exceptions=False) as client:
        access, run = app.state.tunelab.access, uuid.uuid4().hex[:6]
        _, token = access.create_key(f"acme-{run}", rate=None, quota=None)
        _, admin = access.create_key(f"root-{run}", rate=None, quota=None, admin=True)
        yield Api(client, app, token, admin)


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def pending(data_dir: Path) -> list[str]:
    with open_monitor_store(None, data_dir) as store:
        return [a.id for a in store.pending_alerts("markets")]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=2)
    yield r
    r.close()


# -- from the server -------------------------------------------------------------------------------


def test_each_alert_is_delivered_once_after_failed_attempts(tmp_path: Path, receiver: Receiver) -> None:
    with serving(tmp_path, tmp_path / "data", alert_webhook=receiver.url) as api:
        listing = api.client.get("/v1/apps/monitor", headers=api.headers(api.token)).json()
        assert listing["monitors"][0]["webhook"] is True
        opened = api.send(calm_and_surge()).json()["alerts"]
        ids = sorted(a["id"] for a in opened)
        assert len(ids) == 2
        wait_for(lambda: sorted(receiver.accepted()) == ids)
        time.sleep(0.5)  # several polls later: nothing is sent again
        metrics = api.metrics()
    assert sorted(receiver.accepted()) == ids and len(receiver.posts) == 6
    assert pending(tmp_path / "data") == []
    assert 'tunelab_alert_webhook_deliveries_total{outcome="delivered"} 2.0' in metrics
    assert 'tunelab_alert_webhook_deliveries_total{outcome="failed"} 4.0' in metrics
    assert 'tunelab_webhook_deliveries_total{outcome="delivered"} 0.0' in metrics  # hand-offs apart
    post = next(p for p in receiver.posts if p["key"] == ids[0] and p["status"] == 204)
    body = json.loads(post["body"])
    assert body["event"] == "alert.opened" and body["attempt"] == 3
    alert = next(a for a in opened if a["id"] == ids[0])
    assert body["alert"]["id"] == ids[0] and body["alert"]["key"] == alert["key"]
    assert {d["id"] for d in body["documents"]} == set(alert["docs"])
    times = [d["time"] for d in body["documents"]]
    assert times == sorted(times)
    assert all(d["negative"] and d["text"] for d in body["documents"])
    assert (
        post["headers"]["Idempotency-Key"] == ids[0] and post["headers"]["X-Tunelab-Event"] == "alert.opened"
    )
    expected = "sha256=" + hmac.new(SECRET.encode(), post["body"], hashlib.sha256).hexdigest()
    assert post["headers"]["X-Tunelab-Signature"] == expected


def test_alerts_wait_while_the_webhook_is_down_and_a_restart_delivers_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # First run: nothing listens at the webhook, and retries are an hour apart.
    with serving(tmp_path, data, alert_webhook=dead_url(), webhook_backoff_s=3600) as api:
        ids = sorted(a["id"] for a in api.send(calm_and_surge()).json()["alerts"])
        wait_for(lambda: 'deliveries_total{outcome="failed"} 2.0' in api.metrics())
    assert sorted(pending(data)) == ids  # nothing lost
    up = Receiver()
    try:
        with serving(tmp_path, data, alert_webhook=up.url):  # the restart delivers what is pending
            wait_for(lambda: sorted(up.accepted()) == ids)
        with serving(tmp_path, data, alert_webhook=up.url):  # a third start sends nothing
            time.sleep(0.5)
        assert sorted(up.accepted()) == ids and len(up.posts) == 2
        assert pending(data) == []
    finally:
        up.close()


def test_the_monitor_configs_webhook_serves_when_no_flag_overrides_it(tmp_path: Path) -> None:
    config_hook, flag_hook = Receiver(), Receiver()
    try:
        with serving(tmp_path, tmp_path / "a", webhook=config_hook.url) as api:
            api.send(calm_and_surge())
            wait_for(lambda: len(config_hook.accepted()) == 2)
        with serving(tmp_path, tmp_path / "b", webhook=config_hook.url, alert_webhook=flag_hook.url) as api:
            api.send(calm_and_surge())
            wait_for(lambda: len(flag_hook.accepted()) == 2)
        assert len(config_hook.posts) == 2  # the flag won for the second server
    finally:
        config_hook.close()
        flag_hook.close()


def test_without_a_webhook_alerts_stay_pending_and_no_worker_runs(tmp_path: Path) -> None:
    with serving(tmp_path, tmp_path / "data") as api:
        assert len(api.send(calm_and_surge()).json()["alerts"]) == 2
        assert api.state.alert_webhook is None
    assert len(pending(tmp_path / "data")) == 2  # for whatever delivers them later


def test_alerts_are_never_given_up_and_back_off_to_the_cap() -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    worker = AlertWebhook([], backoff_s=2.0, max_backoff_s=10.0, now=lambda: now, secret="")
    delays = []
    for attempt in (*range(1, 8), 1025, 5000):  # 1,025 tries: a receiver down for about a week
        worker._tries["a1"] = (attempt, now)
        asyncio.run(worker._failed("a1", attempt, "HTTP 500"))
        delays.append((worker._tries["a1"][1] - now).total_seconds())
    assert delays == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0]  # no give-up, however many


def test_a_backing_off_alert_is_not_leased_until_due() -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    alert = SimpleNamespace(id="a1", docs=[], to_dict=lambda: {"id": "a1"})
    store = SimpleNamespace(
        pending_alerts=lambda name, limit, after=None: [alert], documents=lambda name, ids: []
    )
    clock = [now]
    worker = AlertWebhook([AlertTarget(store, "markets", "http://x/")], now=lambda: clock[0], secret="")
    [first] = worker.lease(now, 10)
    assert (first.key, first.attempt, first.url) == ("a1", 1, "http://x/")
    assert worker.lease(now, 10) == []  # leased: not taken twice
    worker.failed("a1", error="HTTP 500", retry_at=now + timedelta(seconds=4), now=now)
    assert worker.lease(now + timedelta(seconds=3), 10) == []
    [second] = worker.lease(now + timedelta(seconds=4), 10)
    assert second.attempt == 2


def test_a_delivery_makes_the_alerts_backing_off_from_that_url_due_at_once() -> None:
    """After an outage a new alert went through at once while older ones waited out their own
    back-off (up to 10 minutes): delivered out of order, minutes after the receiver was back."""
    now = datetime(2026, 3, 2, tzinfo=UTC)
    old, new, other = (
        SimpleNamespace(id=i, docs=[], to_dict=lambda i=i: {"id": i}) for i in ("a1", "a2", "b1")
    )
    pending = {"markets": [old], "bonds": [other]}
    store = SimpleNamespace(
        pending_alerts=lambda name, limit, after=None: list(pending[name]),
        documents=lambda name, ids: [],
        mark_alert_delivered=lambda key, at: None,
    )
    targets = [AlertTarget(store, "markets", "http://x/"), AlertTarget(store, "bonds", "http://elsewhere/")]
    worker = AlertWebhook(targets, now=lambda: now, secret="")
    assert {o.key for o in worker.lease(now, 10)} == {"a1", "b1"}
    for key in ("a1", "b1"):
        worker.failed(key, error="HTTP 503", retry_at=now + timedelta(minutes=10), now=now)
    pending["markets"].append(new)
    [sent] = worker.lease(now, 10)  # the new one: never tried
    assert sent.key == "a2"
    worker.delivered("a2", now)  # the receiver is back
    pending["markets"].remove(new)
    assert [o.key for o in worker.lease(now, 10)] == ["a1"]  # not in 10 minutes; b1's URL is another


def test_a_drain_tries_each_alert_once_and_stops_when_told() -> None:
    """``--once``: an alert whose back-off ran out during the others' timeouts is not tried again,
    and a stop (SIGTERM) ends the drain before the next POST."""
    import threading

    now = datetime(2026, 3, 2, tzinfo=UTC)
    clock = [now]
    alerts = [SimpleNamespace(id=f"a{i}", docs=[], to_dict=lambda i=i: {"id": f"a{i}"}) for i in range(3)]
    store = SimpleNamespace(
        pending_alerts=lambda name, limit, after=None: alerts, documents=lambda name, ids: []
    )
    posts: list[str] = []
    stop = threading.Event()

    def hanging(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        posts.append(headers["Idempotency-Key"])
        clock[0] += timedelta(seconds=60)  # a timeout: every back-off so far has run out
        if len(posts) == stop_after[0]:
            stop.set()
        raise TimeoutError("timed out")

    stop_after = [0]
    worker = AlertWebhook(
        [AlertTarget(store, "markets", "http://x/")],
        backoff_s=1.0,
        now=lambda: clock[0],
        post=hanging,
        secret="",
    )
    asyncio.run(worker.drain())
    assert sorted(posts) == ["a0", "a1", "a2"]  # each once
    posts.clear()
    stop_after[0] = 1
    asyncio.run(worker.drain(stop))
    assert len(posts) == 1  # stopped after the POST under way
    posts.clear()
    stop.clear()
    stop_after[0] = 0
    asyncio.run(worker.drain())  # a later drain tries them all again
    assert sorted(posts) == ["a0", "a1", "a2"]


# -- from the follower (tunelab app monitor run) ---------------------------------------------------


def write_config(tmp_path: Path, webhook: str) -> Path:
    from test_monitor_app import DETECTOR

    path = tmp_path / "monitor.yaml"
    raw = {
        "name": "markets",
        "store": str(tmp_path / "monitor.db"),
        "sources": [{"follow": str(tmp_path / "news.jsonl")}],
        "runs": {"sentiment": "runs/unused"},
        "detector": DETECTOR,
        "poll": "1s",
        "webhook": webhook,
    }
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    import tunelab.apps.monitor.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "load_classifier", lambda cfg, ner=None: classifier())


def follower_pending(tmp_path: Path) -> list[str]:
    with open_monitor_store(str(tmp_path / "monitor.db")) as store:
        return [a.id for a in store.pending_alerts("markets")]


def test_run_once_delivers_and_what_failed_waits_for_the_next_run(
    tmp_path: Path, stand_in: None, capsys: pytest.CaptureFixture[str]
) -> None:
    write_jsonl(tmp_path / "news.jsonl", calm_and_surge())
    path = write_config(tmp_path, dead_url())
    assert monitor_cmd.run(cli_args("run", "--config", str(path), "--once")) == 0
    err = capsys.readouterr().err
    assert "alerts are POSTed to http://127.0.0.1:" in err
    assert "2 alerts wait for the webhook (it failed); they are sent at the next run" in err
    waiting = sorted(follower_pending(tmp_path))
    assert len(waiting) == 2
    up = Receiver()
    try:
        path = write_config(tmp_path, up.url)
        assert monitor_cmd.run(cli_args("run", "--config", str(path), "--once")) == 0
        assert sorted(up.accepted()) == waiting and follower_pending(tmp_path) == []
        assert "wait for the webhook" not in capsys.readouterr().err
        assert monitor_cmd.run(cli_args("run", "--config", str(path), "--once")) == 0
        assert len(up.posts) == 2  # delivered ones are not sent again
    finally:
        up.close()


def test_a_following_run_retries_with_back_off_until_delivered(
    tmp_path: Path, stand_in: None, monkeypatch: pytest.MonkeyPatch, sigterm_self
) -> None:
    import tunelab.apps.monitor.webhook as webhook_module

    monkeypatch.setattr(webhook_module, "BACKOFF_S", 0.05)
    monkeypatch.setattr(webhook_module, "POLL_S", 0.1)
    hook = Receiver(fail=2)
    try:
        write_jsonl(tmp_path / "news.jsonl", calm_and_surge())
        path = write_config(tmp_path, hook.url)
        sigterm_self.when(lambda: len(hook.accepted()) >= 2, timeout_s=30)
        assert monitor_cmd.run(cli_args("run", "--config", str(path))) == 0  # until SIGTERM
        sigterm_self.join()
        assert len(hook.accepted()) == 2
        first = hook.accepted()[0]
        assert [p["status"] for p in hook.posts if p["key"] == first] == [500, 500, 204]
        assert follower_pending(tmp_path) == []
    finally:
        hook.close()


# -- PostgreSQL ------------------------------------------------------------------------------------


def test_on_postgresql_batches_trend_alerts_and_delivery(postgres_url: str, tmp_path: Path) -> None:
    """The same path on the server's PostgreSQL database (a fresh monitor name: the tables are shared)."""
    name = f"pg{uuid.uuid4().hex[:8]}"
    hook = Receiver(fail=1)
    try:
        cfg = monitor_config(tmp_path, name=name)
        overrides = fast(db=postgres_url, alert_webhook=hook.url)
        app = create_app(settings(tmp_path, **overrides), monitors=[(cfg, CountingClassifier())])
        with TestClient(app, raise_server_exceptions=False) as client:
            _, token = app.state.tunelab.access.create_key(f"k-{name}", rate=None, quota=None)
            auth = {"Authorization": f"Bearer {token}"}
            url = f"/v1/apps/monitor/{name}"
            docs = calm_and_surge()
            r = client.post(f"{url}/documents", json={"documents": docs[:200]}, headers=auth)
            assert r.status_code == 200 and r.json()["stored"] == 200, r.text
            r = client.post(f"{url}/documents", json={"documents": docs[150:]}, headers=auth).json()
            assert (r["stored"], r["duplicates"], len(r["alerts"])) == (220, 50, 2)
            trend = client.get(
                f"{url}/trend", params={"topic": "earnings", "bucket": "1h"}, headers=auth
            ).json()
            assert sum(b["count"] for b in trend["buckets"]) == 420 and len(trend["alerts"]) == 1
            listed = client.get(f"{url}/alerts", params={"key": "company:acme"}, headers=auth).json()[
                "alerts"
            ]
            assert len(listed) == 1
            wait_for(lambda: len(hook.accepted()) == 2)
            rows = [u for u in app.state.tunelab.store.usage(key_name=f"k-{name}")]
            assert [(u.app, u.model, u.texts) for u in rows] == [
                ("monitor", name, 200),
                ("monitor", name, 270),
            ]
        with open_monitor_store(postgres_url) as store:
            assert store.pending_alerts(name) == [] and store.count(name) == 420
        assert len(hook.posts) == 4  # two failed first attempts, two deliveries
    finally:
        hook.close()


def test_stopping_the_follower_waits_until_the_post_in_flight_is_recorded(tmp_path: Path) -> None:
    """`app monitor run` waited 5 s for the delivery thread, then closed the store under a POST
    the receiver acknowledged later: a traceback, and the alert stayed pending (sent again)."""
    from tunelab.apps.monitor.detector import Alert, alert_id
    from tunelab.apps.monitor.webhook import DeliveryThread

    receiver = Receiver()
    receiver.delay_s = 6.0
    started = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    opened = Alert(alert_id("markets", "topic:x", started), "markets", "topic:x", "negative_volume",
                   started, 5.0, 1.0, 9.0, [])  # fmt: skip
    try:
        with open_monitor_store(str(tmp_path / "monitor.db")) as store:
            store.register_monitor("markets")
            store.save_alerts([opened])
            worker = AlertWebhook([AlertTarget(store, "markets", receiver.url)], secret=None, poll_s=0.05)
            thread = DeliveryThread(worker)
            thread.start()
            wait_for(lambda: len(receiver.posts) == 1)
            thread.stop()  # SIGTERM while the receiver is still answering
            assert store.pending_alerts("markets") == []  # recorded as delivered before the store closes
    finally:
        receiver.close()


def test_a_server_stopping_records_the_alert_post_in_flight_before_closing_a_monitors_own_store(
    tmp_path: Path,
) -> None:
    """The server closed the monitors (and a monitor's own `store:`) before the alert webhook, so a
    POST acknowledged during shutdown could not be recorded and the alert was sent again."""
    receiver = Receiver()
    receiver.delay_s = 1.5
    own = tmp_path / "own-monitor.db"
    cfg = monitor_config(tmp_path, store=str(own))
    data_dir = tmp_path / "data"
    try:
        app = create_app(
            settings(data_dir, **fast(alert_webhook=receiver.url)), monitors=[(cfg, CountingClassifier())]
        )
        with TestClient(app, raise_server_exceptions=False) as client:
            access = app.state.tunelab.access
            _, token = access.create_key("acme", rate=None, quota=None)
            _, admin = access.create_key("root", rate=None, quota=None, admin=True)
            opened = Api(client, app, token, admin).send(calm_and_surge()).json()["alerts"]
            assert opened
            wait_for(lambda: len(receiver.posts) >= 1)
        # the TestClient's exit shut the server down while the receiver was answering
        with open_monitor_store(str(own)) as store:
            left = [a.id for a in store.pending_alerts("markets")]
        assert receiver.posts[0]["key"] not in left, (left, receiver.posts[0]["key"])
    finally:
        receiver.close()


def test_one_monitors_store_failing_does_not_hold_back_the_other_monitors_alerts(caplog) -> None:
    """A served monitor with its own database down ended every round at its target: the healthy
    monitors' alerts were never POSTed."""
    now = datetime(2026, 3, 2, tzinfo=UTC)

    def down(name, limit, after=None):
        raise RuntimeError("database a is down")

    alert = SimpleNamespace(id="b1", docs=[], to_dict=lambda: {"id": "b1"})
    broken = SimpleNamespace(pending_alerts=down, documents=lambda name, ids: [])
    healthy = SimpleNamespace(
        pending_alerts=lambda name, limit, after=None: [alert], documents=lambda name, ids: []
    )
    worker = AlertWebhook(
        [AlertTarget(broken, "a", "http://x/a"), AlertTarget(healthy, "b", "http://x/b")],
        now=lambda: now,
        secret="",
    )
    with caplog.at_level("WARNING"):
        [leased] = worker.lease(now, 10)
        assert (leased.key, leased.url) == ("b1", "http://x/b")
        assert worker.lease(now, 10) == [] and worker.lease(now + timedelta(seconds=1), 10) == []
    # logged once, not once a lease (every few seconds while the database stays down)
    assert (
        caplog.text.count("monitor a: reading its pending alerts failed (RuntimeError: database a is down)")
        == 1
    )
