"""The monitor's second review: a rotated file its writer keeps growing is left after a bound, a
sparse file's leading NULs (copytruncate under a writer without O_APPEND) are skipped, a webhook
added later is not sent the ended history, a source gone after the start does not stop the others,
weekly trend buckets start on Monday, and a report does not create a mistyped store."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from tunelab.apps.monitor import Classifier, Monitor, MonitorConfig, open_monitor_store, trend
from tunelab.apps.monitor.classify import Classified
from tunelab.apps.monitor.detector import Alert, alert_id
from tunelab.apps.monitor.documents import Document, parse_line
from tunelab.apps.monitor.sources import ROTATION_MAX_READS, FileFollower, file_lines
from tunelab.apps.monitor.webhook import AlertTarget, AlertWebhook
from tunelab.errors import ConfigError, DataError

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def line(i: int) -> bytes:
    return (json.dumps({"id": f"n{i}", "time": 1_772_400_000 + i, "text": f"news {i}"}) + "\n").encode()


def ids(chunk) -> list[str]:
    return [json.loads(x.raw)["id"] for x in chunk.lines] if chunk is not None else []


class FakeSentiment:
    labels = SimpleNamespace(names=["negative", "neutral", "positive"])
    task_name = "single_label"

    def predict(self, texts, batch_size=64):
        return [{"label": "negative" if "falls" in t else "positive", "score": 0.9} for t in texts]


def monitor_config(tmp_path: Path, **raw) -> MonitorConfig:
    base = {
        "name": "markets",
        "store": str(tmp_path / "monitor.db"),
        "sources": [{"follow": str(tmp_path / "news.jsonl")}],
        "runs": {"sentiment": "runs/unused"},
        "poll": "1s",
    }
    return MonitorConfig.from_dict({**base, **raw})


@pytest.fixture
def store(monitor_store):  # type: ignore[no-untyped-def]
    """The monitor store (conftest ``monitor_store``: SQLite and PostgreSQL)."""
    return monitor_store


# -- 1. a rotated file its writer keeps growing -------------------------------------------------------


def test_a_rotated_file_written_to_at_every_poll_is_left_for_the_new_file(tmp_path: Path, caplog) -> None:
    """Reads were counted only when one found no complete line: a writer that never reopened and
    wrote a line before each poll pinned the follower on the old file, the new one never read."""
    path = tmp_path / "news.jsonl"
    old = open(path, "ab", buffering=0)  # noqa: SIM115 -- the writer holds its file open
    old.write(line(0))
    follower = FileFollower(path)
    assert ids(follower.read()) == ["n0"]
    os.rename(path, tmp_path / "news.jsonl.1")
    path.write_bytes(line(1000))
    got: list[str] = []
    for poll in range(3 * ROTATION_MAX_READS):
        old.write(line(poll + 1))  # one line before each read: never a read without a line
        got += ids(follower.read())
    old.close()
    assert "n1000" in got
    assert got[: ROTATION_MAX_READS + 1] == [f"n{i}" for i in range(1, ROTATION_MAX_READS + 2)]
    assert follower.position.inode == path.stat().st_ino
    assert "still grows" in caplog.text


def test_a_rotated_file_with_a_backlog_is_read_to_its_end_before_the_bound_applies(tmp_path: Path) -> None:
    """The bound counts reads that reached the file's end: a follower behind by more than ten
    reads' worth still reads the whole backlog of the rotated file."""
    path = tmp_path / "news.jsonl"
    path.write_bytes(b"".join(line(i) for i in range(40)))
    follower = FileFollower(path, read_bytes=len(line(0)) * 2)  # two lines a read
    os.rename(path, tmp_path / "news.jsonl.1")
    path.write_bytes(line(1000))
    got: list[str] = []
    for _ in range(40):
        got += ids(follower.read())
    assert got == [f"n{i}" for i in range(40)] + ["n1000"]


# -- 2. a sparse file after copytruncate --------------------------------------------------------------


def copytruncate_under_a_writer(path: Path, hole_after: list[bytes], *, before: int = 3) -> FileFollower:
    """A writer without O_APPEND writes ``before`` lines, a follower reads them, logrotate copies
    and truncates the file, and the writer goes on at its own offset: the file starts with a hole."""
    writer = open(path, "wb", buffering=0)  # noqa: SIM115 -- a writer without O_APPEND
    for i in range(before):
        writer.write(line(i))
    follower = FileFollower(path)
    assert len(follower.read().lines) == before
    shutil.copy2(path, path.with_name(path.name + ".1"))
    os.truncate(path, 0)
    for data in hole_after:
        writer.write(data)
    writer.close()
    return follower


def read_documents(follower: FileFollower) -> list[str]:
    out = []
    for _ in range(100):  # bounded: a follower that never runs dry fails the test, not the run
        if (chunk := follower.read(grace=False)) is None:
            break
        for x in chunk.lines:
            out.append(parse_line(x.raw).id if x.raw is not None else f"refused line {x.number}")
    return out


def test_a_sparse_file_after_copytruncate_reads_its_first_document(tmp_path: Path, caplog) -> None:
    """The NULs of the hole were part of the first line: "not JSON", the document skipped."""
    path = tmp_path / "news.jsonl"
    follower = copytruncate_under_a_writer(path, [line(3), line(4)])
    assert path.read_bytes()[:1] == b"\x00"
    assert read_documents(follower) == ["n3", "n4"]
    assert caplog.text.count("starts with NUL bytes") == 1


def test_a_sparse_hole_longer_than_the_line_limit_is_skipped_not_refused(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    """After a file over MAX_LINE_BYTES, the hole alone was over the limit: the document after it
    was refused as an over-long line."""
    import tunelab.apps.monitor.sources as sources

    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 300)
    path = tmp_path / "news.jsonl"
    follower = copytruncate_under_a_writer(path, [line(50), line(51)], before=12)
    follower.read_bytes = 64  # the hole spans many reads
    assert path.stat().st_size > 300 + len(line(50))
    assert read_documents(follower) == ["n50", "n51"]
    assert "starts with NUL bytes" in caplog.text
    path.write_bytes(b"\x00" * 500)  # truncated again, a hole and no line yet: nothing, no error
    assert follower.read() is None


def test_a_folder_file_starting_with_a_hole_reads_its_lines(tmp_path: Path, monkeypatch, caplog) -> None:
    import tunelab.apps.monitor.sources as sources

    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 100)
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\x00" * 250 + b'{"a": 1}\n' + b"\x00" * 3 + b"x\n" + b"y" * 101 + b"\nlast")
    for block in (16, 1 << 20):
        got = [(x.number, x.raw) for x in file_lines(path, block_bytes=block)]
        assert got == [(1, b'{"a": 1}'), (2, b"x"), (3, None), (4, b"last")], block
    assert "a.jsonl line 1: starts with NUL bytes" in caplog.text


# -- 3. a webhook added later ------------------------------------------------------------------------


def alert(key: str, minutes: float, *, ended: bool) -> Alert:
    started = T0 + timedelta(minutes=minutes)
    return Alert(
        alert_id("markets", key, started),
        "markets",
        key,
        "negative_volume",
        started,
        5.2,
        0.2,
        0.7,
        ["d1"],
        ended_at=started + timedelta(minutes=30) if ended else None,
    )


def drain(store, name: str = "markets") -> list[str]:
    """The alert ids a webhook made now for monitor ``name`` POSTs in one round."""
    sent: list[str] = []

    def post(url, body, headers, timeout):
        sent.append(headers["Idempotency-Key"])
        return 200

    worker = AlertWebhook([AlertTarget(store, name, "http://hooks.example.com/")], post=post, secret="")
    asyncio.run(worker.drain())
    return sent


def test_a_webhook_added_later_is_sent_open_alerts_and_new_ones_not_the_ended_history(store) -> None:
    """Every alert stored while no webhook was configured was POSTed, as "alert.opened", once
    one was: weeks of ended episodes in a burst."""
    history = [alert(f"topic:t{i}", i, ended=True) for i in range(5)]
    still_open = alert("company:acme", 10, ended=False)
    store.save_alerts([*history, still_open])
    assert store.count_pending_alerts("markets") == 6  # no webhook yet: for whatever delivers later
    sent: list[str] = []

    def post(url, body, headers, timeout):
        sent.append(headers["Idempotency-Key"])
        raise OSError("connection refused")  # down: what is stored from now on waits for it

    worker = AlertWebhook([AlertTarget(store, "markets", "http://hooks.example.com/")], post=post, secret="")
    assert store.count_pending_alerts("markets") == 1  # the open one only
    later = alert("topic:rates", 20, ended=True)  # stored and ended while the webhook is down
    store.save_alerts([later])
    asyncio.run(worker.drain())
    assert sorted(sent) == sorted([still_open.id, later.id])
    assert drain(store) == [still_open.id, later.id]  # a restart with the webhook: still its
    assert store.count_pending_alerts("markets") == 0
    assert len(store.alerts("markets")) == 7  # the history is kept, only not POSTed


def test_a_run_without_a_webhook_keeps_its_ended_alerts_from_the_next_webhook(store) -> None:
    from tunelab.cli import monitor_cmd

    assert drain(store) == []  # a webhook was configured once
    no_hook = SimpleNamespace(webhook=None, name="markets")
    with monitor_cmd._delivering(no_hook, SimpleNamespace(store=store), once=True):
        store.save_alerts([alert("topic:t1", 1, ended=True), alert("topic:t2", 2, ended=False)])
    assert store.count_pending_alerts("markets") == 2  # without one: all of them, as before
    assert drain(store) == [alert("topic:t2", 2, ended=False).id]


def test_a_run_without_the_webhook_keeps_the_alerts_the_last_one_was_owed(store, capsys) -> None:
    """A run with a webhook that was down said its alert "is sent at the next run"; one run without
    ``webhook:`` in between cleared ``webhook_since``, and the alert was never sent by any webhook."""
    from tunelab.cli import monitor_cmd

    def down(url, body, headers, timeout):
        raise OSError("connection refused")

    worker = AlertWebhook([AlertTarget(store, "markets", "http://hooks.example.com/")], post=down, secret="")
    owed = alert("topic:t1", 1, ended=True)
    store.save_alerts([owed])
    asyncio.run(worker.drain())  # down: it waits
    no_hook = SimpleNamespace(webhook=None, name="markets")
    with monitor_cmd._delivering(no_hook, SimpleNamespace(store=store), once=True):
        store.save_alerts([alert("topic:t2", 2, ended=True)])  # this run's own: history
    assert "markets: 1 alert waits for the webhook this run has none of" in capsys.readouterr().err
    assert drain(store) == [owed.id]
    assert store.count_pending_alerts("markets") == 0


def test_an_alert_open_when_a_run_without_the_webhook_starts_stays_owed_once_it_ends(store, capsys) -> None:
    """Pending only because it was open, an alert that ended during a run without a webhook was
    neither owed nor stored after the next webhook began: never sent, and not counted as waiting."""
    from dataclasses import replace

    from tunelab.cli import monitor_cmd

    def down(url, body, headers, timeout):
        raise OSError("connection refused")

    worker = AlertWebhook([AlertTarget(store, "markets", "http://hooks.example.com/")], post=down, secret="")
    still_open = alert("topic:t1", 1, ended=False)
    store.save_alerts([still_open])
    asyncio.run(worker.drain())
    no_hook = SimpleNamespace(webhook=None, name="markets")
    with monitor_cmd._delivering(no_hook, SimpleNamespace(store=store), once=True):
        store.save_alerts([replace(still_open, ended_at=still_open.started_at + timedelta(minutes=30))])
    assert "markets: 1 alert waits for the webhook this run has none of" in capsys.readouterr().err
    assert drain(store) == [still_open.id]


def test_an_older_store_gets_the_webhook_columns_and_keeps_a_delivering_monitors_backlog(
    tmp_path: Path,
) -> None:
    """A store from before ``webhook_since`` opens; a monitor that delivered alerts had a webhook, so
    what waits for it is still sent; one that never delivered is not sent its ended history."""
    path = tmp_path / "monitor.db"
    with sqlite3.connect(path) as conn:  # the tables as an older release created them
        conn.execute("CREATE TABLE tunelab_monitors (name TEXT PRIMARY KEY, created_at TEXT NOT NULL)")
        conn.execute(
            "CREATE TABLE tunelab_monitor_alerts (id TEXT PRIMARY KEY, monitor TEXT NOT NULL,"
            " key TEXT NOT NULL, kind TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,"
            " level DOUBLE PRECISION NOT NULL, baseline DOUBLE PRECISION NOT NULL,"
            " observed DOUBLE PRECISION NOT NULL, docs TEXT NOT NULL, delivered_at TEXT)"
        )
        for name in ("markets", "bonds"):
            conn.execute(
                "INSERT INTO tunelab_monitors VALUES (?, '2026-03-01T00:00:00.000000+00:00')", [name]
            )
        delivered = "2026-03-02T10:00:00.000000+00:00"
        for alert_key, name, at in (
            ("m1", "markets", delivered),
            ("m2", "markets", None),
            ("b1", "bonds", None),
        ):
            conn.execute(
                "INSERT INTO tunelab_monitor_alerts VALUES (?, ?, 'topic:x', 'negative_volume',"
                " '2026-03-02T08:00:00.000000+00:00', '2026-03-02T08:30:00.000000+00:00', 5, 1, 9, '[]', ?)",
                [alert_key, name, at],
            )
    conn.close()
    with open_monitor_store(str(path)) as s:
        assert drain(s, "markets") == ["m2"]  # it waited for its webhook
        assert drain(s, "bonds") == []  # its history: no webhook ever delivered it
        assert len(s.alerts("bonds")) == 1
    with open_monitor_store(str(path)) as s:  # a second open adds and backfills nothing again
        assert s.pending_alerts("markets") == s.pending_alerts("bonds") == []


# -- 4. a source gone after the start ----------------------------------------------------------------


def test_a_source_gone_after_the_start_is_warned_about_and_the_others_go_on(tmp_path: Path, caplog) -> None:
    """The server runs ``run`` again after any failure; it checked every source's existence each
    time, so one folder removed raised ConfigError every 10 s and no source was read again."""
    (tmp_path / "inbox").mkdir()
    news = tmp_path / "news.jsonl"
    news.write_bytes(line(1))
    cfg = monitor_config(tmp_path, sources=[{"follow": str(news)}, {"directory": str(tmp_path / "inbox")}])
    with Monitor(cfg, classifier=Classifier(FakeSentiment())) as monitor:
        assert monitor.run(once=True).stored == 1
        shutil.rmtree(tmp_path / "inbox")
        with open(news, "ab") as fh:
            fh.write(line(2))
        assert monitor.run(once=True).stored == 1  # what the server's follower calls again
    assert "inbox: No such file or directory; the other sources go on" in caplog.text
    (tmp_path / "gone").mkdir()
    cfg = monitor_config(tmp_path, sources=[{"follow": str(news)}, {"directory": str(tmp_path / "gone")}])
    shutil.rmtree(tmp_path / "gone")
    with (
        Monitor(cfg, classifier=Classifier(FakeSentiment())) as monitor,  # a first start still checks
        pytest.raises(ConfigError, match=r"sources\[1\]\.directory: .*gone does not exist"),
    ):
        monitor.run(once=True)


# -- 5. weekly buckets -------------------------------------------------------------------------------


def test_weekly_trend_buckets_start_on_monday(store) -> None:
    """Epoch-aligned weeks began on Thursday (1970-01-01 was one)."""
    docs = [
        Document(id=f"d{i}", time=datetime(2026, 3, 2 + i, 12, tzinfo=UTC), text="x", topic="earnings")
        for i in range(10)  # Monday 2 March to Wednesday 11 March
    ]
    res = Classified("negative", 0.9, True, "earnings", ())
    store.save("markets", docs, [res] * len(docs))
    out = trend(store, "markets", bucket="1w")
    assert [(b["start"], b["count"]) for b in out["buckets"]] == [
        ("2026-03-02T00:00:00+00:00", 7),
        ("2026-03-09T00:00:00+00:00", 3),
    ]
    inside = trend(store, "markets", bucket="2w", start="2026-03-05T10:00:00Z", end="2026-03-20")
    assert all(datetime.fromisoformat(b["start"]).weekday() == 0 for b in inside["buckets"])
    assert inside["buckets"][0]["count"] == 10
    year_one = trend(store, "markets", bucket="1w", start="0001-01-01", end="0001-01-02")  # a Monday
    assert [b["start"] for b in year_one["buckets"]] == ["0001-01-01T00:00:00+00:00"]
    with pytest.raises(DataError, match="beyond the years 1 to 9999"):  # 3 days: epoch-aligned
        trend(store, "markets", bucket="3d", start="0001-01-01", end="0001-01-02")
    assert [b["start"][:10] for b in trend(store, "markets", bucket="1d")["buckets"]][:2] == [
        "2026-03-02",
        "2026-03-03",
    ]


# -- 6. report on a mistyped store -------------------------------------------------------------------


def test_a_report_on_a_store_that_does_not_exist_is_refused_creating_nothing(tmp_path: Path) -> None:
    import argparse

    from tunelab.cli import monitor_cmd

    typo = tmp_path / "typo" / "monitro.db"
    config = tmp_path / "monitor.yaml"
    raw = {
        "name": "markets",
        "store": str(typo),
        "sources": [{"follow": str(tmp_path / "news.jsonl")}],
        "runs": {"sentiment": "runs/unused"},
    }
    config.write_text(json.dumps(raw), encoding="utf-8")
    parser = argparse.ArgumentParser(prog="tunelab app")
    monitor_cmd.add_parser(parser.add_subparsers(dest="app"))
    args = parser.parse_args(
        ["monitor", "report", "--config", str(config), "--out", str(tmp_path / "r.html")]
    )
    with pytest.raises(ConfigError, match=rf"^store: {typo} does not exist \(") as info:
        monitor_cmd.run(args)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "typo").exists() and not (tmp_path / "r.html").exists()
    with open_monitor_store(str(tmp_path / "here.db")) as s:  # an existing one opens as before
        s.register_monitor("markets")
    with open_monitor_store(str(tmp_path / "here.db"), create=False) as s:
        s.check_monitor("markets")


def test_an_overlong_line_read_in_reads_shorter_than_the_head_is_refused_once(
    tmp_path: Path, monkeypatch
) -> None:
    """Reads shorter than the 256 bytes a position hashes kept only the first read's bytes of a
    refused line: the head then no longer matched the file, which was taken for truncated and read
    again from its start, over and over."""
    import tunelab.apps.monitor.sources as sources

    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 300)
    path = tmp_path / "news.jsonl"
    path.write_bytes(line(1) + b"x" * 500 + b"\n" + line(3))
    follower = FileFollower(path, read_bytes=64)
    got = []
    for _ in range(20):
        if (chunk := follower.read()) is None:
            break
        got += [(x.number, x.raw is None) for x in chunk.lines]
    assert got == [(1, False), (2, True), (3, False)]
