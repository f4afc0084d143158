"""Sentiment monitors served next to models (``/v1/apps/monitor/...``) through the HTTP app in process
(``TestClient``), with the stand-in classifier of test_monitor_app.py and a real SQLite store:
ingestion (all or nothing, idempotent, metered), trend, alerts, limits, keys, metrics, following."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_api import AppApi, app_factory, error, open_app
from test_monitor_app import DETECTOR, calm_and_surge, classifier, doc, write_jsonl
from test_serve_app import settings

from tunelab.apps.monitor import MonitorConfig
from tunelab.errors import ConfigError
from tunelab.serve.app import create_app
from tunelab.serve.limits import Quota, Rate

URL = "/v1/apps/monitor/markets"


def monitor_config(tmp_path: Path, **raw: Any) -> MonitorConfig:
    base = {"name": "markets", "runs": {"sentiment": "runs/unused"}, "detector": DETECTOR, "poll": "1s"}
    return MonitorConfig.from_dict({**base, **raw}, path=tmp_path / f"{raw.get('name', 'markets')}.yaml")


class CountingClassifier:
    """The stand-in classifier, counting its calls and the documents of each."""

    def __init__(self) -> None:
        self.inner = classifier()
        self.calls: list[int] = []
        self.gate: threading.Event | None = None
        self.lock = threading.Lock()

    def classify(self, docs: list[Any]) -> list[Any]:
        if self.gate is not None:
            assert self.gate.wait(30)
        with self.lock:
            self.calls.append(len(docs))
        if any("explode" in d.text for d in docs):
            raise RuntimeError("secret /srv/runs path broke")
        return self.inner.classify(docs)


class Api(AppApi):
    @property
    def store(self) -> Any:
        return self.state.monitors.get("markets").monitor.store

    def send(self, documents: Any, *, token: str | None = "default", name: str = "markets") -> Any:
        return self.client.post(
            f"/v1/apps/monitor/{name}/documents",
            json={"documents": documents},
            headers=self.headers(self.token_or_default(token)),
        )

    def get(self, path: str, token: str | None = "default", **params: Any) -> Any:
        headers = self.headers(self.token_or_default(token))
        return self.client.get(f"{URL}{path}", params=params, headers=headers)


DEFAULTS = {"max_texts_per_request": 500, "max_body_bytes": 1024 * 1024}


def open_api(tmp_path: Path, monitors: list[Any] | None = None, **overrides: Any) -> Iterator[Api]:
    monitors = [(monitor_config(tmp_path), CountingClassifier())] if monitors is None else monitors
    yield from open_app(Api, tmp_path, DEFAULTS | overrides, monitors=monitors)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from open_api(tmp_path)


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    yield from app_factory(lambda monitors=None, **overrides: open_api(tmp_path, monitors, **overrides))


# -- documents -------------------------------------------------------------------------------------


def test_a_batch_is_stored_once_by_id_and_metered_per_document(api: Api) -> None:
    docs = [doc(1, 0, "Acme Corp revenue steady"), doc(2, 1, "Globex shares falls"), doc(1, 0, "again")]
    r = api.send(docs)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "monitor": "markets",
        "received": 3,
        "stored": 2,
        "duplicates": 1,
        "alerts": [],
        "unwatched": 0,
    }
    [row] = api.rows()
    assert (row.app, row.model, row.version, row.texts, row.status) == ("monitor", "markets", None, 3, 200)
    assert row.request_id == r.headers["X-Request-ID"]
    again = api.send(docs[:2]).json()  # sent again (a retry, a restart): nothing counts twice
    assert (again["stored"], again["duplicates"]) == (0, 2)
    assert api.store.count("markets") == 2
    stored = {d["id"]: d for d in api.store.documents("markets", ["n1", "n2"])}
    assert (stored["n1"]["label"], stored["n2"]["label"]) == ("positive", "negative")
    usage = api.client.get("/v1/usage", headers=api.headers(api.token)).json()
    assert usage["by_model"]["monitor/markets"] == {"requests": 2, "texts": 5, "tokens": 0}


def test_a_batch_says_how_many_keys_it_left_unwatched_at_the_cap(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    """The detector watches at most detector.max_keys keys; a client sending made-up topics is told."""
    api = make_api(monitors=[(monitor_config(tmp_path, detector={"max_keys": 3}), CountingClassifier())])
    docs = [{**doc(i, i, "revenue steady"), "topic": f"made-up-{i}"} for i in range(1, 7)]
    r = api.send(docs)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["stored"] == 6 and out["unwatched"] == 3  # the first 3 topics are watched, the last 3 not
    assert api.store.count("markets") == 6  # stored all the same


@pytest.mark.parametrize(
    ("documents", "status", "code", "says"),
    [
        ([doc(1, 0, "fine"), {"time": 1, "text": "no id"}], 422, "invalid_document", "documents[1]: no id"),
        (
            [doc(1, 0, "fine", time="soon")],
            422,
            "invalid_document",
            "documents[0]: document 'n1': time 'soon'",
        ),
        ([{"id": "x", "text": "t"}], 422, "invalid_document", "documents[0]: document 'x': no time"),
        ([doc(1, 0, "x" * 61)], 422, "invalid_document", "text has 61 characters, over the limit of 60"),
        (
            [doc(1, 0, "nul\x00inside")],
            422,
            "invalid_document",
            "documents[0]: document 'n1': text contains a NUL",
        ),
        ([doc(1, 0, "fine", time=1.7e12)], 422, "invalid_document", "milliseconds?"),
        ([doc(1, 0, "fine"), "text"], 422, "invalid_request", "body.documents.1"),
        ([], 422, "invalid_request", "body.documents"),
        ([doc(i, 0, "fine") for i in range(6)], 413, "too_many_documents", "6 documents in one request"),
    ],
)
def test_a_bad_batch_is_refused_whole_naming_the_document(
    make_api: Callable[..., Api], tmp_path: Path, documents: Any, status: int, code: str, says: str
) -> None:
    api = make_api(
        [(monitor_config(tmp_path, max_text_chars=60), CountingClassifier())], max_texts_per_request=5
    )
    r = api.send(documents)
    assert r.status_code == status, r.text
    assert error(r)["code"] == code and says in error(r)["message"]
    assert api.store.count("markets") == 0  # all or nothing: the good documents are not stored either
    assert [row.status for row in api.rows()] == [status]  # a refused request is recorded, not billed


def test_a_body_over_the_limit_is_413_before_it_is_read(make_api: Callable[..., Api]) -> None:
    api = make_api(max_body_bytes=2048)
    r = api.send([doc(i, 0, "y" * 100) for i in range(30)])
    assert r.status_code == 413 and error(r)["code"] == "body_too_large"
    assert api.store.count("markets") == 0


def test_an_unknown_monitor_is_a_404_naming_the_served_ones(api: Api) -> None:
    for r in (
        api.send([doc(1, 0, "x")], name="bonds"),
        api.client.get("/v1/apps/monitor/bonds/trend", headers=api.headers(api.token)),
    ):
        assert r.status_code == 404
        assert error(r) == {
            "code": "unknown_monitor",
            "message": "monitor 'bonds' is not served (served: markets)",
        }
    [row] = api.rows()
    assert (row.model, row.status) == ("_other", 404)  # never the caller's name


def test_a_classifier_that_raises_is_a_bare_500_and_nothing_is_stored(api: Api) -> None:
    r = api.send([doc(1, 0, "explode")])
    assert r.status_code == 500 and "srv" not in r.text and r.headers["X-Request-ID"] in r.text
    assert api.store.count("markets") == 0
    assert api.send([doc(2, 0, "fine")]).status_code == 200  # the batcher still works


def test_rate_limits_and_quotas_count_documents(api: Api) -> None:
    _, limited = api.state.access.create_key("small", rate=None, quota=Quota.parse("3/day"))
    assert api.send([doc(1, 0, "a"), doc(2, 0, "b")], token=limited).status_code == 200
    r = api.send([doc(3, 0, "c"), doc(4, 0, "d")], token=limited)
    assert r.status_code == 429 and error(r)["code"] == "quota_exceeded" and r.headers["Retry-After"]
    assert api.store.existing_ids("markets", ["n3", "n4"]) == set()  # refused before the classifier
    _, slow = api.state.access.create_key("slow", rate=Rate.parse("1/hour"), quota=None)
    assert [api.send([doc(i, 0, "e")], token=slow).status_code for i in (5, 6)] == [200, 429]
    # reads count against the rate too (a key limited to a few a second read a large store freely)
    for path in ("/trend", "/alerts"):
        _, reader = api.state.access.create_key(f"reader{path[1:]}", rate=Rate.parse("1/hour"), quota=None)
        assert [api.get(path, token=reader).status_code for _ in range(2)] == [200, 429]
    # a read bills no texts, so a key whose quota is used up still reads, and nothing is reserved
    assert api.get("/alerts", token=limited).status_code == 200


def test_requests_without_a_valid_key_write_no_rows_and_no_series(api: Api) -> None:
    api.send([doc(1, 0, "x")], token=None)  # each route's 401 series exists from here on
    api.client.get(f"{URL}/trend")
    api.metrics()
    before = api.metrics()
    statuses = []
    for token in (None, "nonsense", f"tl_{uuid.uuid4().hex[:8]}_" + "x" * 43) * 10:
        name = f"m{uuid.uuid4().hex}"
        statuses.append(api.send([doc(1, 0, "x")], token=token, name=name).status_code)
        statuses.append(
            api.client.get(f"/v1/apps/monitor/{name}/trend", headers=api.headers(token)).status_code
        )
    after = api.metrics()
    assert set(statuses) == {401}
    assert api.rows() == [] and api.store.count("markets") == 0
    assert len(after) <= len(before) + 100 and 'bot="m' not in after and "_other" not in after
    assert 'tunelab_refused_requests_total{reason="missing_key"} 22.0' in after


def test_without_auth_anonymous_batches_are_metered(make_api: Callable[..., Api]) -> None:
    api = make_api(require_keys=False)
    assert api.send([doc(1, 0, "x")], token=None).status_code == 200
    [row] = api.rows()
    assert (row.key_id, row.app, row.model, row.status) == (None, "monitor", "markets", 200)


def test_concurrent_batches_are_classified_together(make_api: Callable[..., Api], tmp_path: Path) -> None:
    counting = CountingClassifier()
    api = make_api([(monitor_config(tmp_path), counting)], max_wait_ms=300)
    counting.gate = threading.Event()
    results: list[Any] = [None] * 6

    def send(i: int) -> None:
        results[i] = api.send([doc(10 * i, i, "Acme Corp revenue"), doc(10 * i + 1, i, "rate up")])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # the first batch waits at the gate; the others queue behind it
    counting.gate.set()
    for t in threads:
        t.join(30)
    assert all(r.status_code == 200 and r.json()["stored"] == 2 for r in results)
    assert sum(counting.calls) == 12 and len(counting.calls) < 6  # fewer calls than requests
    assert api.store.count("markets") == 12


def test_metrics_count_requests_documents_and_alerts(api: Api) -> None:
    api.send(calm_and_surge())
    api.send([doc(0, 0, "again")])
    text = api.metrics()
    key = api.state.access.list_keys()[1].name
    assert f'tunelab_app_requests_total{{app="monitor",bot="markets",key="{key}",status="200"}} 2.0' in text
    assert 'tunelab_monitor_documents_total{monitor="markets",outcome="stored"} 420.0' in text
    assert 'tunelab_monitor_documents_total{monitor="markets",outcome="duplicate"} 1.0' in text
    assert 'tunelab_monitor_alerts_total{monitor="markets"} 2.0' in text
    assert 'model="markets"' not in text  # a monitor is not a model


def test_the_listing_and_readiness_show_the_monitors(api: Api) -> None:
    listing = api.client.get("/v1/apps/monitor", headers=api.headers(api.token)).json()
    [info] = listing["monitors"]
    assert (info["name"], info["source"], info["following"], info["webhook"]) == (
        "markets",
        None,
        False,
        False,
    )
    admin = api.client.get("/v1/apps/monitor", headers=api.headers(api.admin)).json()
    assert admin["monitors"][0]["source"].endswith("markets.yaml")
    ready = api.client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"]["monitors"] == "1 loaded"


def test_two_monitors_of_one_name_fail_in_one_line(tmp_path: Path) -> None:
    pair = (monitor_config(tmp_path), CountingClassifier())
    with pytest.raises(ConfigError, match="a monitor named 'markets' is already served"):
        create_app(settings(tmp_path), monitors=[pair, pair])


# -- trend and alerts ------------------------------------------------------------------------------


def test_the_trend_has_buckets_per_topic_and_company_with_the_alerts(api: Api) -> None:
    alerts = api.send(calm_and_surge()).json()["alerts"]
    assert sorted(a["key"] for a in alerts) == ["company:acme", "topic:earnings"]
    r = api.get("/trend", topic="earnings", **{"from": "2026-03-02T06:00:00Z", "to": "2026-03-02T09:00:00Z"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["monitor"], out["topic"], out["bucket"], out["bucket_s"]) == (
        "markets",
        "earnings",
        "1h",
        3600,
    )
    assert out["from"] == "2026-03-02T06:00:00Z" and len(out["buckets"]) == 3
    assert out["from_cut"] is False  # a from was given: never cut
    assert sum(b["count"] for b in out["buckets"]) == 420
    assert out["buckets"][0] == {
        "start": "2026-03-02T06:00:00Z",
        "count": 120,
        "negative": 24,
        "negative_share": 0.2,
    }
    assert [a["key"] for a in out["alerts"]] == ["topic:earnings"]
    company = api.get("/trend", company="Acme Corp.", bucket="1800").json()  # normalised; seconds
    assert company["company"] == "acme" and company["bucket_s"] == 1800
    assert [a["key"] for a in company["alerts"]] == ["company:acme"]
    initech = api.get("/trend", company="Initech").json()["buckets"]  # none named it: zeros
    assert len(initech) == 3 and {b["count"] for b in initech} == {0}


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"bucket": "hourly"}, "bucket: 'hourly' is not a duration"),
        ({"from": "soon"}, "from: time 'soon' is not ISO 8601"),
        ({"to": "2026-13-01"}, "to: time '2026-13-01' is not ISO 8601"),
        ({"from": "2026-03-03", "to": "2026-03-02"}, "is not before to"),
        ({"from": "2026-03-01", "to": "2026-03-05", "bucket": "1m"}, "bucket 1m: 5,760 buckets"),
        ({"topic": "a\x00b"}, "query.topic"),
        # Times and buckets that parse but overflow were a bare 500.
        ({"from": "0001-01-01T00:00:00+01:00"}, "from: time '0001-01-01T00:00:00+01:00' is out of the range"),
        ({"to": "9999-12-31T23:59:59-01:00"}, "to: time '9999-12-31T23:59:59-01:00' is out of the range"),
        ({"bucket": "\u00b2"}, "bucket: '\u00b2' is not a duration"),
        ({"bucket": "\u00b2d"}, "bucket: '\u00b2d' is not a duration"),
        ({"bucket": "99999999999999999999999"}, "bucket: '99999999999999999999999' is not a duration"),
        ({"from": "0001-01-01", "to": "0001-01-02", "bucket": "3d"}, "beyond the years 1 to 9999"),
        # a company that normalises to nothing was read as no filter: the whole stream came back
        ({"company": "!!!"}, "company '!!!' names no company"),
    ],
)
def test_bad_trend_parameters_are_422_naming_the_field(api: Api, params: dict[str, str], says: str) -> None:
    api.send([doc(1, 0, "x")])
    r = api.get("/trend", **params)
    assert r.status_code == 422 and says in error(r)["message"], r.text


def test_a_document_dated_further_ahead_than_max_future_is_a_422_naming_it(api: Api) -> None:
    typo = doc(2, 0, "x") | {"time": "2062-03-02T07:00:00Z"}  # 2062 for 2026
    r = api.send([doc(1, 0, "fine"), typo])
    assert r.status_code == 422, r.text
    assert "documents[1]: document 'n2': time 2062-03-02T07:00:00+00:00 is after" in error(r)["message"]
    assert api.store.count("markets") == 0


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", -90_000_000_000])
def test_a_time_that_overflows_in_utc_is_a_422_naming_the_document(api: Api, when: Any) -> None:
    r = api.send([doc(1, 0, "fine"), {"id": "x", "time": when, "text": "hi"}])
    assert r.status_code == 422, r.text
    assert f"documents[1]: document 'x': time {when!r} is out of the range of dates" in error(r)["message"]


def test_alerts_are_listed_and_filtered_by_time_and_key(api: Api) -> None:
    opened = api.send(calm_and_surge()).json()["alerts"]
    listed = api.get("/alerts").json()
    assert listed["monitor"] == "markets"
    assert {a["id"] for a in listed["alerts"]} == {a["id"] for a in opened}
    assert all(a["ended_at"] is not None for a in listed["alerts"])  # the surge ended in the stream
    acme = api.get("/alerts", key="company:Acme Corp").json()["alerts"]
    assert [a["key"] for a in acme] == ["company:acme"] and acme[0]["docs"]
    started = acme[0]["started_at"]
    assert api.get("/alerts", **{"from": started}).json()["alerts"]
    assert api.get("/alerts", to=started).json()["alerts"] == []  # to is exclusive
    for params, says in (
        ({"from": "later"}, "from: time 'later'"),
        ({"key": "acme"}, "query.key"),
        ({"from": "2026-03-03", "to": "2026-03-02"}, "is not before to"),
        ({"from": "0001-01-01T00:00:00+01:00"}, "from: time '0001-01-01T00:00:00+01:00' is out of the range"),
        ({"to": "9999-12-31T23:59:59-01:00"}, "to: time '9999-12-31T23:59:59-01:00' is out of the range"),
    ):
        r = api.get("/alerts", **params)
        assert r.status_code == 422 and says in error(r)["message"], r.text
    assert api.get("/alerts", token=None).status_code == 401
    assert len(api.rows()) == 1  # reads are not billed
    # at most `limit` a response, the oldest first (every alert ever, before)
    first = api.get("/alerts", limit=1).json()["alerts"]
    assert [a["id"] for a in first] == [listed["alerts"][0]["id"]]
    r = api.get("/alerts", limit=0)
    assert r.status_code == 422 and "limit" in error(r)["message"]

    # paging with after= walks every alert, also those of one document (one start, two keys);
    # "from the last started_at plus a microsecond", as documented before, lost the second
    assert len({a["started_at"] for a in listed["alerts"]}) < len(listed["alerts"])
    walked, after = [], None
    for _ in range(len(listed["alerts"]) + 1):  # a page that does not move on ends the walk too
        page = api.get("/alerts", limit=1, **({"after": after} if after else {})).json()["alerts"]
        if not page:
            break
        walked += [a["id"] for a in page]
        after = page[-1]["id"]
    assert walked == [a["id"] for a in listed["alerts"]]
    r = api.get("/alerts", after="no-such-alert")
    assert r.status_code == 422 and "after: no alert 'no-such-alert'" in error(r)["message"]


def test_reads_run_at_most_read_threads_at_once_in_threads_of_their_own(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of slow trend queries takes READ_THREADS threads, not the server's shared pool (every
    one of them ran at once before, up to the pool's 40, holding back other requests' key checks).
    They share the limit with usage reports: with 4 of their own they could hold all 4 of
    PostgreSQL's pooled connections, so other clients' key checks waited behind them."""
    import tunelab.apps.monitor as monitor_app
    from tunelab.serve.monitors import READ_THREADS

    api.send(calm_and_surge())
    real, release = monitor_app.trend, threading.Event()
    lock, running, most = threading.Lock(), [0], [0]

    def slow_trend(*args: Any, **kwargs: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            assert release.wait(30)
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(monitor_app, "trend", slow_trend)
    n = READ_THREADS + 4
    answers: list[Any] = [None] * n

    def read(i: int) -> None:
        answers[i] = api.get("/trend", bucket="1d")

    threads = [threading.Thread(target=read, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while most[0] < READ_THREADS and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # room for more to start, were they not held back
    assert most[0] == READ_THREADS == 2
    assert api.send([doc(99_999, 200, "calm")]).status_code == 200  # writes are not held
    report: list[Any] = []
    usage = threading.Thread(
        target=lambda: report.append(api.client.get("/v1/usage", headers=api.headers(api.token)))
    )
    usage.start()
    usage.join(0.5)
    assert not report  # a usage report waits for the same two slots
    release.set()
    for t in [*threads, usage]:
        t.join(30)
    assert [a.status_code for a in answers] == [200] * n
    assert most[0] == READ_THREADS
    assert report[0].status_code == 200


# -- stores and sources ----------------------------------------------------------------------------


def test_a_monitor_with_its_own_store_keeps_its_documents_there(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    from tunelab.apps.monitor import open_monitor_store

    own = tmp_path / "own.db"
    api = make_api([(monitor_config(tmp_path, store=str(own)), CountingClassifier())])
    assert api.send([doc(1, 0, "Acme Corp revenue")]).json()["stored"] == 1
    assert api.get("/trend").json()["buckets"][0]["count"] == 1
    assert api.state.store.count("markets") == 0  # not in the server's database
    with open_monitor_store(str(own)) as store:
        assert store.count("markets") == 1


def test_a_served_monitor_follows_its_sources_and_http_and_file_count_once(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    news = tmp_path / "news.jsonl"
    docs = calm_and_surge(surge=False)[:30]
    write_jsonl(news, docs[:20])
    cfg = monitor_config(tmp_path, sources=[{"follow": str(news)}])
    api = make_api([(cfg, CountingClassifier())])
    assert api.client.get("/v1/apps/monitor", headers=api.headers(api.token)).json()["monitors"][0][
        "following"
    ]
    deadline = time.monotonic() + 20
    while api.store.count("markets") < 20:
        assert time.monotonic() < deadline, "the follower did not read the file"
        time.sleep(0.05)
    r = api.send(docs[10:30]).json()  # 10 of them came through the file already
    assert (r["stored"], r["duplicates"]) == (10, 10)
    write_jsonl(news, docs[25:], mode="a")
    time.sleep(1.5)  # a poll or two later
    assert api.store.count("markets") == 30
    assert 'outcome="duplicate"} 15.0' in api.metrics()


def test_without_follow_the_sources_are_left_alone(make_api: Callable[..., Api], tmp_path: Path) -> None:
    news = tmp_path / "news.jsonl"
    write_jsonl(news, calm_and_surge(surge=False)[:5])
    api = make_api(
        [(monitor_config(tmp_path, sources=[{"follow": str(news)}]), CountingClassifier())],
        follow_sources=False,
    )
    time.sleep(0.3)
    assert api.store.count("markets") == 0
    assert (
        json.loads(api.client.get("/v1/apps/monitor", headers=api.headers(api.token)).text)["monitors"][0][
            "following"
        ]
        is False
    )


def test_a_monitor_store_still_delivers_support_tickets(tmp_path: Path) -> None:
    """The monitor's tables are mixed into the service's store: its alert delivery must not shadow
    the support outbox's ``mark_delivered`` (a server can host bots and monitors on one store)."""
    from datetime import UTC, datetime, timedelta

    from tunelab.apps.monitor import open_monitor_store
    from tunelab.serve.store.support import Ticket, Turn

    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    with open_monitor_store(str(tmp_path / "both.db")) as store:
        ticket = Ticket("tk_1", "bank", "k1", "c1", "hi", [{"text": "hi"}], "r", [], "open", t0, t0)
        store.add_turn(
            Turn("bank", "k1", "c1", "hi", "", "handoff", None, t0, t0), ticket=ticket, outbox=True
        )
        [lease] = store.lease_deliveries(now=t0 + timedelta(seconds=1), lease_s=30)
        store.mark_delivered(lease.ticket.ticket_id, now=t0 + timedelta(seconds=2))
        assert store.outbox()[0]["delivered_at"] == t0 + timedelta(seconds=2)


def test_text_the_database_cannot_store_is_refused_over_http_and_skipped_in_a_file(
    make_api: Callable[..., Api], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = '{"documents": [{"id": "s1", "time": 0, "text": "lone \\ud800 surrogate"}]}'
    news = tmp_path / "news.jsonl"
    news.write_text(
        raw.removeprefix('{"documents": [').removesuffix("]}")
        + "\n"
        + json.dumps(doc(2, 0, "nul\x00text"))
        + "\n"
        + json.dumps(doc(3, 0, "fine"))
        + "\n",
        encoding="utf-8",
    )
    api = make_api([(monitor_config(tmp_path, sources=[{"follow": str(news)}]), CountingClassifier())])
    r = api.client.post(
        f"{URL}/documents",
        content=raw,
        headers={**api.headers(api.token), "Content-Type": "application/json"},
    )
    assert (
        r.status_code == 422
        and "documents[0]: document 's1': text is not valid Unicode" in error(r)["message"]
    )
    deadline = time.monotonic() + 20
    while api.store.count("markets") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert api.store.existing_ids("markets", ["s1", "n2", "n3"]) == {"n3"}  # the stream went on
    assert "line 1: document 's1': text is not valid Unicode" in caplog.text
    assert "line 2: document 'n2': text contains a NUL character" in caplog.text


def test_ids_and_topics_over_200_characters_are_refused_over_http_and_skipped_in_a_file(
    make_api: Callable[..., Api], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Over PostgreSQL's btree limit they failed only at the commit, as a 503 clients retry.
    news = tmp_path / "news.jsonl"
    long_id, long_topic = {**doc(1, 0, "x"), "id": "a" * 4000}, doc(2, 0, "x", topic="t" * 4000)
    write_jsonl(news, [long_id, long_topic, doc(3, 0, "fine")])
    api = make_api([(monitor_config(tmp_path, sources=[{"follow": str(news)}]), CountingClassifier())])
    for bad, says in (
        (
            long_id,
            f"documents[1]: id '{'a' * 30}'... has 4,000 characters, over the limit of 200",
        ),
        (long_topic, "documents[1]: document 'n2': topic has 4,000 characters, over the limit of 200"),
    ):
        r = api.send([doc(4, 0, "fine"), bad])
        assert r.status_code == 422 and says in error(r)["message"], r.text
    deadline = time.monotonic() + 20
    while api.store.count("markets") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert api.store.existing_ids("markets", ["a" * 4000, "n2", "n3", "n4"]) == {"n3"}  # the stream went on
    assert f"line 1: id '{'a' * 30}'... has 4,000 characters" in caplog.text
    assert "line 2: document 'n2': topic has 4,000 characters" in caplog.text


def test_a_follower_failing_again_and_again_logs_one_line_not_a_traceback_each_retry(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A source that cannot be read (refused at start-up in one line) restarted the follower every
    10 s, each time with a full traceback: 360 an hour for one unreadable file."""
    import logging
    import threading
    from types import SimpleNamespace

    from tunelab.errors import ConfigError
    from tunelab.serve import monitors

    stop = threading.Event()
    calls: list[int] = []

    def run(*, stop: threading.Event) -> None:
        calls.append(1)
        if len(calls) == 5:
            stop.set()
        raise ConfigError("sources[0].follow: /feeds/news.jsonl cannot be read (Permission denied)")

    monkeypatch.setattr(monitors, "FOLLOW_RETRY_S", 0.0)
    served = SimpleNamespace(name="news", monitor=SimpleNamespace(run=run))
    with caplog.at_level(logging.WARNING, logger="tunelab.serve.monitors"):
        monitors.MonitorRegistry._follow(SimpleNamespace(_stop=stop), served)  # type: ignore[arg-type]
    lines = [r for r in caplog.records if "following its sources failed" in r.getMessage()]
    assert len(calls) == 5 and len(lines) == 1
    assert "cannot be read (Permission denied)" in lines[0].getMessage() and not lines[0].exc_info


def test_a_keys_documents_in_flight_are_capped_and_other_keys_batches_run_next(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    """POST .../documents had neither the --max-in-flight cap nor a lane per key: one key's stream
    of batches queued without bound, first come first served, ahead of every other key's."""
    order: list[list[str]] = []

    class Recording(CountingClassifier):
        def classify(self, docs: list[Any]) -> list[Any]:
            out = super().classify(docs)
            order.append([d.id for d in docs])
            return out

    counting = Recording()
    api = make_api(
        [(monitor_config(tmp_path), counting)], max_batch=1, max_wait_ms=0, max_in_flight_per_key=3
    )
    _, other = api.state.access.create_key("other", rate=None, quota=None)
    counting.gate = threading.Event()
    statuses: dict[str, int] = {}

    def send(name: str, docs: list[Any], token: str) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: statuses.__setitem__(name, api.send(docs, token=token).status_code)
        )
        thread.start()
        return thread

    threads = [send("a1", [doc(1, 0, "Acme Corp revenue")], "default")]
    time.sleep(0.3)  # a1 is at the gate
    threads += [send(f"a{i}", [doc(i, 0, "rate up")], "default") for i in (2, 3)]
    time.sleep(0.3)
    over = api.send([doc(4, 0, "rate up")], token="default")  # 3 documents of this key in flight
    assert over.status_code == 429 and over.json()["error"]["code"] == "too_many_in_flight"
    threads.append(send("b", [doc(9, 0, "Acme Corp revenue")], other))
    time.sleep(0.3)
    counting.gate.set()
    for t in threads:
        t.join(30)
    assert statuses == {"a1": 200, "a2": 200, "a3": 200, "b": 200}
    assert order[1] == ["n9"], order  # the other key's batch right after the one at the gate
