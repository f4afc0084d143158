"""Serving review fixes, through the apps' in-process servers (their stand-ins, a real SQLite store):
a request that stored something keeps its answer when its usage row fails (a "try again" made the
retry store it twice), every metered app route takes the key's rate first, database errors of
requests without a valid key are logged once per interval, ``keys create`` on a new database says
"(new)", and the ``route`` label of ``tunelab_http_requests`` is the full path template."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_serve_monitor as monitor_tests
import test_serve_recommend as recommend_tests
import test_serve_support as support_tests
from test_monitor_app import doc

from tunelab.cli.main import main
from tunelab.serve.limits import Rate
from tunelab.serve.store import StoreError


@pytest.fixture
def rec(tmp_path: Path) -> Iterator[Any]:
    yield from recommend_tests.open_api(tmp_path)


@pytest.fixture
def mon(tmp_path: Path) -> Iterator[Any]:
    yield from monitor_tests.open_api(tmp_path)


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Any]:
    yield from support_tests.open_api(tmp_path)


def fail_usage_once(api: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The store's next usage row fails (a disk error, a lost connection); the ones after it work."""
    store = api.state.access.store
    real, failed = store.record_usage, []

    def flaky(rec: Any) -> None:
        if not failed:
            failed.append(rec)
            raise StoreError("SQLite database /srv/tunelab.db: disk I/O error")
        real(rec)

    monkeypatch.setattr(store, "record_usage", flaky)
    return failed


def billing_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and "bill it by hand" in r.getMessage()
    ]


# -- 1. a request that stored something is answered even when its usage row fails -----------------


def test_recorded_events_and_added_items_keep_their_answer_when_the_usage_row_fails(
    rec: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The 503 "usage could not be recorded; try again" came after the events were recorded: the
    retry recorded them twice (and an added item's retry got a 409, never billed)."""
    standin = rec.state.recommenders.get("movies").recommender
    fail_usage_once(rec, monkeypatch)
    with caplog.at_level(logging.ERROR, logger="tunelab.serve"):
        r = rec.events([{"user_id": "u9", "item_id": "alien"}])
    assert r.status_code == 200, r.text
    assert r.json()["recorded"] == 1
    assert standin.seen["u9"] == ["alien"]  # recorded once, and the client has no reason to retry
    assert rec.rows() == []  # its row is the one that failed
    [line] = billing_lines(caplog)
    rid = r.headers["X-Request-ID"]
    assert rid in line and "recommend" in line and "movies" in line and "units 1" in line
    key = rec.state.access.authenticate(rec.token)
    assert key.name in line and key.key_id in line  # who to bill

    fail_usage_once(rec, monkeypatch)
    added = rec.add({"item_id": "ghost", "fields": {"title": "Ghost ship space horror"}})
    assert added.status_code == 201, added.text
    assert "ghost" in standin.items
    # A ranking changes nothing: its answer is still withheld, and the client may retry.
    fail_usage_once(rec, monkeypatch)
    ranked = rec.rank("u1")
    assert ranked.status_code == 503 and ranked.json()["error"]["code"] == "usage_unavailable"
    assert rec.rank("u1").status_code == 200


def test_stored_documents_keep_their_answer_when_the_usage_row_fails(
    mon: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fail_usage_once(mon, monkeypatch)
    with caplog.at_level(logging.ERROR, logger="tunelab.serve"):
        r = mon.send([doc(1, 0, "Acme Corp revenue steady"), doc(2, 1, "Globex shares falls")])
    assert r.status_code == 200, r.text
    assert (r.json()["stored"], r.json()["duplicates"]) == (2, 0)
    assert mon.store.count("markets") == 2
    [line] = billing_lines(caplog)
    assert r.headers["X-Request-ID"] in line and "monitor" in line and "markets" in line
    assert "units 2" in line
    assert mon.rows() == []


# -- 2. every metered app route takes the key's rate first -----------------------------------------


def test_a_key_at_one_a_minute_gets_one_404_then_429s_on_every_app_route(
    rec: Any, mon: Any, sup: Any
) -> None:
    """The rate was taken only at admission, after the name and the body were checked: a key at
    1/min could send unknown names, bad texts and bad documents as fast as it liked."""
    routes: dict[str, tuple[Any, Callable[[str], Any], list[Callable[[str], Any]]]] = {
        "support message": (
            sup,
            lambda t: sup.say("card", bot="nope", token=t),
            [lambda t: sup.say("card", bot="nope", token=t), lambda t: sup.say("x" * 51, token=t),
             lambda t: sup.say("card", token=t)],
        ),
        "monitor documents": (
            mon,
            lambda t: mon.send([doc(1, 0, "a")], name="nope", token=t),
            [lambda t: mon.send([doc(1, 0, "a")], name="nope", token=t),
             lambda t: mon.send([{"id": "x", "text": "no time"}], token=t),
             lambda t: mon.send([doc(2, 0, "b")], token=t)],
        ),
        "monitor trend": (
            mon,
            lambda t: mon.client.get("/v1/apps/monitor/nope/trend", headers=mon.headers(t)),
            [lambda t: mon.client.get("/v1/apps/monitor/nope/trend", headers=mon.headers(t)),
             lambda t: mon.get("/trend", token=t)],
        ),
        "monitor alerts": (
            mon,
            lambda t: mon.client.get("/v1/apps/monitor/nope/alerts", headers=mon.headers(t)),
            [lambda t: mon.client.get("/v1/apps/monitor/nope/alerts", headers=mon.headers(t)),
             lambda t: mon.get("/alerts", token=t)],
        ),
        "recommend ranking": (
            rec,
            lambda t: rec.rank("u1", name="nope", token=t),
            [lambda t: rec.rank("u1", name="nope", token=t), lambda t: rec.rank(" ", token=t),
             lambda t: rec.rank("u1", token=t)],
        ),
        "recommend items": (
            rec,
            lambda t: rec.add({"item_id": "n1", "fields": {"title": "t"}}, name="nope", token=t),
            [lambda t: rec.add({"item_id": "n1", "fields": {"title": "t"}}, name="nope", token=t),
             lambda t: rec.add({"items": [{"item_id": "d", "fields": {"title": "t"}}] * 2}, token=t),
             lambda t: rec.add({"item_id": "n2", "fields": {"title": "t"}}, token=t)],
        ),
        "recommend events": (
            rec,
            lambda t: rec.events([{"user_id": "u1", "item_id": "alien"}], name="nope", token=t),
            [lambda t: rec.events([{"user_id": "u1", "item_id": "alien"}], name="nope", token=t),
             lambda t: rec.events([{"user_id": "u1", "item_id": "alien"}], token=t)],
        ),
    }  # fmt: skip
    got = {}
    for i, (route, (api, first, then)) in enumerate(routes.items()):
        _, token = api.state.access.create_key(f"slow{i}", rate=Rate.parse("1/min"), quota=None)
        got[route] = [first(token).status_code] + [send(token).status_code for send in then]
    assert got == {route: [404] + [429] * len(then) for route, (_, _, then) in routes.items()}


# -- 3. database errors of requests without a valid key: one line per interval ---------------------


def test_database_errors_of_requests_without_a_valid_key_are_logged_once_per_interval(
    rec: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """While the database is down, each request with a well-shaped key fails its key look-up; each
    logged an ERROR line, and anyone can send those as fast as they like."""
    store = rec.state.access.store
    shared = getattr(rec.state, "store_error_log", None)
    if shared is not None:
        shared.clock = lambda: 0.0  # all inside one interval, however slow the machine
    real_get_key = store.get_key

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("connection to billing@db.internal:5432 refused")

    monkeypatch.setattr(store, "get_key", down)
    with caplog.at_level(logging.INFO, logger="tunelab.serve"):
        for _ in range(20):
            r = rec.rank("u1", token=rec.token)
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
    lines = [r for r in caplog.records if "database error" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines[:3]]
    assert lines[0].levelno == logging.ERROR and "db.internal" in lines[0].getMessage()  # still said why

    # An authenticated caller's database error is still one line each: no one floods with those.
    monkeypatch.setattr(store, "get_key", real_get_key)
    monkeypatch.setattr(store, "usage_groups", down)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tunelab.serve"):
        for _ in range(3):
            assert rec.client.get("/v1/usage", headers=rec.headers(rec.token)).status_code == 503
    lines = [r for r in caplog.records if "database error" in r.getMessage()]
    assert len(lines) == 3 and {r.levelno for r in lines} == {logging.ERROR}


# -- 4. `keys create` on a new database --------------------------------------------------------------


def test_keys_create_on_a_new_database_does_not_say_it_has_no_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TUNELAB_DB", raising=False)
    fresh = tmp_path / "fresh"
    assert main(["keys", "create", "--name", "acme", "--data-dir", str(fresh)]) == 0
    err = capsys.readouterr().err.strip()
    assert err == f"database: SQLite {fresh / 'tunelab.db'} (new)"
    other = tmp_path / "other"  # a command that only reads still says what it found
    assert main(["keys", "list", "--data-dir", str(other)]) == 0
    assert capsys.readouterr().err.strip().endswith("(new: no keys or usage yet)")


# -- 5. the route label ------------------------------------------------------------------------------


def test_the_route_label_is_the_full_path_template(rec: Any) -> None:
    """The label lacked /v1 (the inner router's path) with the installed FastAPI."""
    assert rec.rank("u1").status_code == 200
    assert rec.rank("someone/else").status_code == 200
    assert rec.events([{"user_id": "u1", "item_id": "alien"}]).status_code == 200
    for i in range(5):
        rec.client.get(f"/v1/nothing/{i}")
    assert rec.client.get("/healthz").status_code == 200
    labels = {
        line.split('route="', 1)[1].split('"', 1)[0]
        for line in rec.metrics().splitlines()
        if line.startswith("tunelab_http_requests_total{")
    }
    assert {
        "/v1/apps/recommend/{name}/users/{user_id}",
        "/v1/apps/recommend/{name}/events",
        "/healthz",
        "unmatched",
    } <= labels, labels
    assert not any("u1" in label or "nothing" in label for label in labels)  # templates only
    assert all(label.startswith("/v1/") or label in ("/healthz", "/metrics", "unmatched") for label in labels)
