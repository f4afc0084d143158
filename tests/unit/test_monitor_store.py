"""The monitor's tables on the service's store backends, the same tests over SQLite and PostgreSQL
(the ``postgres_url`` fixture: a throwaway local server, or the tests skip saying why)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tunelab.apps.monitor.classify import Classified
from tunelab.apps.monitor.detector import Alert, alert_id
from tunelab.apps.monitor.documents import Document
from tunelab.apps.monitor.sources import FileKey, Position
from tunelab.apps.monitor.store import UnknownMonitorError, open_monitor_store
from tunelab.apps.monitor.trend import trend
from tunelab.errors import ConfigError, DataError

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(monitor_store):  # type: ignore[no-untyped-def]
    """The monitor store (conftest ``monitor_store``: SQLite and PostgreSQL)."""
    return monitor_store


def doc(i: int, minutes: float, *, topic: str | None = "earnings") -> Document:
    return Document(id=f"d{i}", time=T0 + timedelta(minutes=minutes), text=f"text {i}", topic=topic)


def res(negative: bool, topic: str | None = "earnings", companies: tuple[str, ...] = ()) -> Classified:
    return Classified("negative" if negative else "positive", 0.9, negative, topic, companies)


def alert(key: str = "topic:earnings", minutes: float = 30) -> Alert:
    started = T0 + timedelta(minutes=minutes)
    return Alert(
        alert_id("markets", key, started), "markets", key, "negative_share", started, 5.2, 0.2, 0.7, ["d1"]
    )


def test_documents_are_stored_once_by_id_and_read_back(store) -> None:
    docs = [doc(1, 0), doc(2, 5), doc(3, 70, topic=None)]
    results = [res(True, companies=("acme", "globex")), res(False), res(True, topic=None)]
    assert store.save("markets", docs, results).inserted == [0, 1, 2]
    again = store.save("markets", [doc(2, 5), doc(4, 90)], [res(False), res(False)])
    assert again.inserted == [1]  # d2 was stored already: skipped, not counted twice
    assert store.count("markets") == 4
    assert store.existing_ids("markets", ["d1", "d9", "d4"]) == {"d1", "d4"}
    assert store.existing_ids("other", ["d1"]) == set()  # another monitor's documents are its own
    first = store.documents("markets", ["d3", "d1"])
    assert [d["id"] for d in first] == ["d1", "d3"]
    assert first[0] | {"time": None} == {
        "id": "d1",
        "time": None,
        "text": "text 1",
        "source": None,
        "topic": "earnings",
        "label": "negative",
        "score": 0.9,
        "negative": True,
    }
    assert first[0]["time"] == T0
    assert store.time_range("markets") == (T0, T0 + timedelta(minutes=90))
    recent = store.recent("markets", int((T0 + timedelta(minutes=1)).timestamp()))
    assert [(r[0], r[2], r[3], r[4]) for r in recent] == [
        ("d2", "earnings", False, []),
        ("d3", None, True, []),
        ("d4", "earnings", False, []),
    ]
    assert store.recent("markets", int(T0.timestamp()))[0][4] == ["acme", "globex"]


def test_time_range_is_exact_within_a_second_and_read_through_the_epoch_index(store, tmp_path: Path) -> None:
    seconds = [0.25, 0.75, 30.5, 61.2, 61.9]  # two documents in the first second, two in the last
    docs = [
        Document(id=f"t{i}", time=T0 + timedelta(seconds=s), text="t", topic=None)
        for i, s in enumerate(seconds)
    ]
    store.save("markets", docs, [res(False, topic=None)] * len(docs))
    assert store.time_range("markets") == (T0 + timedelta(seconds=0.25), T0 + timedelta(seconds=61.9))
    until = int((T0 + timedelta(seconds=31)).timestamp())
    assert store.time_range("markets", until_epoch=until) == (
        T0 + timedelta(seconds=0.25),
        T0 + timedelta(seconds=30.5),
    )
    assert store.time_range("other") is None
    if (tmp_path / "monitor.db").exists():  # SQLite: no full scan of the monitor's documents
        import sqlite3

        from tunelab.apps.monitor.store import time_range_sql

        with sqlite3.connect(tmp_path / "monitor.db") as conn:
            for bounded in (False, True):
                sql = "EXPLAIN QUERY PLAN " + time_range_sql(bounded=bounded)
                plan = " | ".join(str(row[-1]) for row in conn.execute(sql, ["m"] * (6 if bounded else 4)))
                assert "SCAN tunelab_monitor_documents" not in plan, plan
                assert "tunelab_monitor_documents_epoch" in plan, plan
            # a restart's warm-up reads the last baseline's companies by time
            sql = "SELECT doc_id, company FROM tunelab_monitor_companies WHERE monitor = ? AND epoch >= ?"
            plan = " | ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, ["m", 0]))
            assert "tunelab_monitor_companies_epoch" in plan, plan


def test_ids_topics_sources_and_companies_of_the_longest_accepted_length_are_stored(store) -> None:
    from tunelab.apps.monitor.documents import MAX_KEY_CHARS

    # Four UTF-8 bytes a character: the most bytes the index entries can get (PostgreSQL's btree
    # refuses entries over 2,704 bytes, where SQLite has no limit).
    longest = "\U0001f600" * MAX_KEY_CHARS
    long_doc = Document(id=longest, time=T0, text="t", source=longest, topic=longest)
    assert store.save("markets", [long_doc], [res(True, topic=longest, companies=(longest,))]).inserted == [0]
    [row] = store.documents("markets", [longest])
    assert (row["id"], row["topic"], row["source"]) == (longest, longest, longest)
    assert store.bucket_counts("markets", bucket_s=3600, company=longest, topic=longest) != []


def test_buckets_per_topic_and_company_are_counted_in_the_database(store) -> None:
    docs = [doc(i, m) for i, m in enumerate([0, 10, 50, 65, 130])]
    negative = [True, False, True, True, False]
    companies = [("acme",), ("acme",), (), ("acme", "globex"), ("globex",)]
    store.save("markets", docs, [res(n, companies=c) for n, c in zip(negative, companies, strict=True)])
    hour = int(T0.timestamp()) // 3600
    assert store.bucket_counts("markets", bucket_s=3600) == [(hour, 3, 2), (hour + 1, 1, 1), (hour + 2, 1, 0)]
    assert store.bucket_counts("markets", bucket_s=3600, company="acme") == [(hour, 2, 1), (hour + 1, 1, 1)]
    start = int((T0 + timedelta(minutes=60)).timestamp())
    assert store.bucket_counts("markets", bucket_s=3600, topic="earnings", start_epoch=start) == [
        (hour + 1, 1, 1),
        (hour + 2, 1, 0),
    ]
    assert store.bucket_counts("markets", bucket_s=3600, topic="rates") == []
    assert store.top_keys("markets", "company") == [("acme", 3), ("globex", 2)]
    assert store.top_keys("markets", "topic") == [("earnings", 5)]


def test_trend_fills_empty_buckets_and_carries_the_alerts(store) -> None:
    docs = [doc(i, m) for i, m in enumerate([0, 10, 130])]
    store.save(
        "markets",
        docs,
        [res(True, companies=("acme",)), res(False), res(True)],
        alerts=[alert("company:acme")],
    )
    out = trend(store, "markets", company="Acme Corp.", bucket="1h")
    assert out["company"] == "acme" and out["bucket_s"] == 3600
    # By default the monitor's whole time range: the same time axis for every topic and company.
    assert [(b["count"], b["negative"], b["negative_share"]) for b in out["buckets"]] == [
        (1, 1, 1.0),
        (0, 0, None),
        (0, 0, None),
    ]
    assert [a["key"] for a in out["alerts"]] == ["company:acme"]
    out = trend(store, "markets", start="2026-03-02T08:00:00Z", end="2026-03-02T12:00:00Z", bucket="1h")
    assert [b["start"][11:16] for b in out["buckets"]] == ["08:00", "09:00", "10:00", "11:00"]
    assert [b["count"] for b in out["buckets"]] == [0, 2, 0, 1]
    assert out["buckets"][0]["negative_share"] is None
    with pytest.raises(DataError, match=r"bucket 1m: 5,760 buckets .* use a larger bucket"):
        trend(store, "markets", start="2026-03-01", end="2026-03-05", bucket="1m")
    with pytest.raises(DataError, match=r"^bucket: 'hourly' is not a duration"):
        trend(store, "markets", bucket="hourly")
    with pytest.raises(DataError, match=r"^from: time 'soon' is not ISO 8601"):
        trend(store, "markets", start="soon")
    with pytest.raises(DataError, match="is not before to"):
        trend(store, "markets", start="2026-03-02", end="2026-03-01")
    # one side past the documents: nothing there, one empty bucket (it gave a 'to' before 'from')
    since = trend(store, "markets", start="2026-03-05T10:30:00Z", bucket="1h")
    assert [(b["start"], b["count"]) for b in since["buckets"]] == [("2026-03-05T10:00:00+00:00", 0)]
    assert since["from"] < since["to"]
    until = trend(store, "markets", end="2026-03-01T10:30:00Z", bucket="1h")
    assert [(b["start"], b["count"]) for b in until["buckets"]] == [("2026-03-01T10:00:00+00:00", 0)]
    with pytest.raises(UnknownMonitorError, match=r"unknown monitor 'bonds' \(known: markets\)"):
        trend(store, "bonds")


def test_alerts_wait_for_delivery_and_an_episode_is_updated_not_duplicated(store) -> None:
    opened = alert()
    store.save("markets", [], [], alerts=[opened])
    store.save_alerts([opened])  # the same alert again (a replay): still one
    assert [a.id for a in store.pending_alerts()] == [opened.id]
    ended = Alert(**{**opened.__dict__, "ended_at": T0 + timedelta(hours=2)})
    store.save_alerts([ended])
    (only,) = store.alerts("markets")
    assert only.ended_at == T0 + timedelta(hours=2) and only.docs == ["d1"] and only.level == 5.2
    assert store.alerts("markets", open_only=True) == []
    assert store.mark_alert_delivered(opened.id) is True
    assert store.mark_alert_delivered(opened.id) is False  # delivered once
    assert store.pending_alerts() == []
    assert store.alerts("markets", key="company:acme") == []


def test_positions_and_seen_files_are_kept_per_monitor_and_source(store) -> None:
    assert store.position("markets", "/feeds/news.jsonl") is None
    store.save("markets", [], [], position=("/feeds/news.jsonl", Position(42, 1000, 12, "abc")))
    store.save("markets", [], [], position=("/feeds/news.jsonl", Position(42, 2000, 20, "abc")))
    assert store.position("markets", "/feeds/news.jsonl") == Position(42, 2000, 20, "abc")
    key = FileKey("a.jsonl", 10, 123456789012345678)
    store.save("markets", [], [], file=("/inbox", key))
    assert store.seen_files("markets", "/inbox") == {key}
    assert store.seen_files("bonds", "/inbox") == set()


def test_the_default_store_is_the_services_database(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TUNELAB_DB", raising=False)
    with open_monitor_store() as s:
        s.register_monitor("m")
        s.list_keys()  # the service's tables are there too: one database for both
    assert (tmp_path / "data" / "tunelab.db").is_file()
    with pytest.raises(ConfigError, match=r"^store: 'mysql://x': use postgresql://"):
        open_monitor_store("mysql://x")
    with open_monitor_store(str(tmp_path / "data" / "tunelab.db")) as s:
        s.check_monitor("m")
        with pytest.raises(UnknownMonitorError, match="unknown monitor 'n'"):
            s.check_monitor("n")


def test_a_bucket_counts_whole_even_where_from_and_to_fall_inside_it(store) -> None:
    """Each bucket is labelled by its start: the 09:00 bucket of a from of 09:30 holds 09:00-10:00."""
    docs = [doc(i, m) for i, m in enumerate([5, 20, 40, 70, 100])]  # 09:05 09:20 09:40 10:10 10:40
    store.save("markets", docs, [res(False)] * 5)
    out = trend(store, "markets", start="2026-03-02T09:30:00Z", end="2026-03-02T10:30:00Z", bucket="1h")
    assert [(b["start"][11:16], b["count"]) for b in out["buckets"]] == [("09:00", 3), ("10:00", 2)]


def test_a_document_before_1970_lands_in_its_own_bucket(store) -> None:
    """SQL's integer division truncates toward zero: 1969-12-31T23:30 fell in 1970-01-01T00:00."""
    old = Document(
        id="d-old", time=datetime(1969, 12, 31, 23, 30, tzinfo=UTC), text="archive", topic="earnings"
    )
    store.save("markets", [old], [res(True)])
    rows = store.bucket_counts("markets", bucket_s=3600)
    assert rows == [(-1, 1, 1)]


def test_alerts_page_after_an_id_through_alerts_that_share_a_start(store) -> None:
    same = [alert("topic:earnings", 30), alert("company:acme", 30), alert("company:globex", 30)]
    store.save_alerts([*same, alert("topic:earnings", 90)])
    everything = [a.id for a in store.alerts("markets")]
    walked: list[str] = []
    after = None
    for _ in range(len(everything)):
        page = store.alerts("markets", limit=1, after=after)
        walked += [a.id for a in page]
        after = page[-1].id
    assert walked == everything
    assert store.alerts("markets", after=everything[-1]) == []
    assert store.has_alert("markets", everything[0]) and not store.has_alert("markets", "nope")


def test_the_webhook_pages_past_alerts_backing_off_to_newer_ones(store, monkeypatch) -> None:
    """The outbox read only the oldest page of pending alerts: with that many failing for good
    (never given up, backing off), every newer alert waited forever."""
    from tunelab.apps.monitor import webhook

    monkeypatch.setattr(webhook, "SCAN", 3)
    store.save_alerts([alert("topic:earnings", m) for m in range(7)])
    worker = webhook.AlertWebhook([webhook.AlertTarget(store, "markets", "http://x")], secret=None)
    now = T0 + timedelta(days=1)
    first = worker.lease(now, 6)
    assert len(first) == 6
    for out in first:  # the six oldest fail and back off for an hour
        worker.failed(out.key, error="422", retry_at=now + timedelta(hours=1), now=now)
    ids = [a.id for a in store.pending_alerts("markets", limit=10)]
    assert [out.key for out in first] == ids[:6]
    assert [out.key for out in worker.lease(now, 6)] == ids[6:]


def test_pending_alerts_are_counted_whole_not_by_the_page(store) -> None:
    """``run --once`` said "100 alerts wait" with 150 waiting: it counted one page of them."""
    store.save_alerts([alert("topic:earnings", m) for m in range(150)])
    assert len(store.pending_alerts("markets")) == 100  # a page, for the outbox
    assert store.count_pending_alerts("markets") == 150


def test_a_position_keeps_the_followed_files_resolved_target(store) -> None:
    """A re-pointed symlink's old target is found after a restart where the position says it was."""
    at = Position(42, 1000, 12, "abc", "/feeds/archive/day1.jsonl")
    store.save("markets", [], [], position=("/feeds/news.jsonl", at))
    assert store.position("markets", "/feeds/news.jsonl") == at


def test_a_positions_table_from_before_targets_gets_the_column_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "monitor.db"
    with sqlite3.connect(path) as conn:  # the table as an older release created it
        conn.execute(
            "CREATE TABLE tunelab_monitor_positions (monitor TEXT NOT NULL, source TEXT NOT NULL,"
            " inode BIGINT NOT NULL, byte_offset BIGINT NOT NULL, line BIGINT NOT NULL, head TEXT NOT NULL,"
            " updated_at TEXT NOT NULL, PRIMARY KEY (monitor, source))"
        )
        conn.execute(
            "INSERT INTO tunelab_monitor_positions VALUES ('markets', '/feeds/news.jsonl', 42, 1000, 12,"
            " 'abc', '2026-03-02T09:00:00+00:00')"
        )
    conn.close()
    with open_monitor_store(str(path)) as store:
        assert store.position("markets", "/feeds/news.jsonl") == Position(42, 1000, 12, "abc")
        at = Position(42, 2000, 20, "abc", "/feeds/archive/day1.jsonl")
        store.save("markets", [], [], position=("/feeds/news.jsonl", at))
        assert store.position("markets", "/feeds/news.jsonl") == at
    with open_monitor_store(str(path)) as store:  # a second open adds nothing twice
        assert store.position("markets", "/feeds/news.jsonl") == at
