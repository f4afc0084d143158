"""A watched folder's small files are classified and stored several to a batch, each file recorded
as read in the transaction that stores its documents; the folder is listed with one ``scandir``;
a trend by topic and company looks each company row's document up by primary key.

Before, each file cost one forward pass, one id lookup and one commit (2,000 one-line files took
33 s against 12 s as one file), and the topic-and-company trend listed every document of the topic
ever stored. Stand-in classifiers only: these tests take a fraction of a second each.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import tunelab.apps.monitor.monitor as monitor_module
from tunelab.apps.monitor import Classifier, Monitor, MonitorConfig, open_monitor_store
from tunelab.apps.monitor.classify import Classified
from tunelab.apps.monitor.documents import Document
from tunelab.apps.monitor.schema import INSERT_FILE
from tunelab.apps.monitor.sources import FileKey, Line, list_files

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FakeSentiment:
    """Negative when the text says "falls"."""

    labels = SimpleNamespace(names=["negative", "neutral", "positive"])
    task_name = "single_label"

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict[str, Any]]:
        return [{"label": "negative" if "falls" in t else "positive", "score": 0.9} for t in texts]


class CountingClassifier(Classifier):
    """A stand-in classifier that counts its calls (one call: one forward pass of each model),
    and fails the call numbered ``fail_at`` (from 1) as a killed process would stop there."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__(FakeSentiment())
        self.calls: list[int] = []  # documents per call
        self.fail_at = fail_at

    def classify(self, docs: Any) -> list[Classified]:
        self.calls.append(len(docs))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("killed")
        return super().classify(docs)


def config(tmp_path: Path, inbox: Path) -> MonitorConfig:
    return MonitorConfig.from_dict(
        {
            "name": "markets",
            "store": str(tmp_path / "monitor.db"),
            "sources": [{"directory": str(inbox)}],
            "runs": {"sentiment": "runs/unused"},
            "poll": "1s",
        }
    )


def news(i: int, text: str = "news") -> str:
    when = (T0 + timedelta(seconds=i)).isoformat()
    return json.dumps({"id": f"n{i}", "time": when, "text": f"{text} {i}"}) + "\n"


def write_files(inbox: Path, sizes: list[int]) -> dict[str, list[str]]:
    """Files f000.jsonl, f001.jsonl ... of ``sizes`` lines, oldest first; their ids by name."""
    inbox.mkdir(exist_ok=True)
    out, n = {}, 0
    for k, size in enumerate(sizes):
        name = f"f{k:03d}.jsonl"
        (inbox / name).write_text("".join(news(n + j) for j in range(size)), encoding="utf-8")
        os.utime(inbox / name, ns=(1_700_000_000_000_000_000 + k, 1_700_000_000_000_000_000 + k))
        out[name] = [f"n{n + j}" for j in range(size)]
        n += size
    return out


def stored_ids(monitor: Monitor) -> set[str]:
    with monitor.store._transaction(write=False) as conn:
        rows = monitor.store._exec(conn, "SELECT id FROM tunelab_monitor_documents").fetchall()
    return {r[0] for r in rows}


def read_names(monitor: Monitor, inbox: Path) -> set[str]:
    return {k.name for k in monitor.store.seen_files("markets", str(inbox.resolve()))}


def assert_consistent(monitor: Monitor, inbox: Path, files: dict[str, list[str]]) -> set[str]:
    """Each file's documents are stored iff the file is recorded read; the files read."""
    stored, read = stored_ids(monitor), read_names(monitor, inbox)
    for name, ids in files.items():
        assert (set(ids) <= stored) == (name in read), name
        assert (set(ids) & stored == set()) == (name not in read), name
    return read


# -- 1. several files a batch --------------------------------------------------------------------


def test_fifty_one_line_files_are_classified_in_one_call_and_one_commit(tmp_path: Path, monkeypatch) -> None:
    inbox = tmp_path / "inbox"
    files = write_files(inbox, [1] * 50)
    counting = CountingClassifier()
    with Monitor(config(tmp_path, inbox), classifier=counting) as monitor:
        saves, lookups = [], []
        real_save, real_existing = monitor.store.save, monitor.store.existing_ids
        monkeypatch.setattr(monitor.store, "save", lambda *a, **k: saves.append(1) or real_save(*a, **k))
        monkeypatch.setattr(monitor.store, "existing_ids", lambda *a: lookups.append(1) or real_existing(*a))
        result = monitor.run(once=True)
        assert (result.stored, result.duplicates, result.skipped) == (50, 0, 0)
        assert counting.calls == [50]  # was 50 calls of one document
        assert (len(saves), len(lookups)) == (1, 1)
        assert read_names(monitor, inbox) == set(files)
        assert monitor.poll().stored == 0  # nothing read again
    with Monitor(config(tmp_path, inbox), classifier=CountingClassifier()) as monitor:
        assert monitor.run(once=True).stored == 0  # nor after a restart
        assert monitor.store.count("markets") == 50


def test_batches_fill_to_the_chunk_size_and_a_file_is_recorded_with_its_last_lines(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(monitor_module, "CHUNK_DOCS", 4)
    inbox = tmp_path / "inbox"
    files = write_files(inbox, [2, 10, 0, 1, 2])  # f001 spans three batches; f002 is empty
    counting = CountingClassifier()
    with Monitor(config(tmp_path, inbox), classifier=counting) as monitor:
        commits: list[tuple[list[str], list[str]]] = []
        real = monitor.store.save

        def spy(name: str, docs: Any, results: Any, **kw: Any) -> Any:
            commits.append(([d.id for d in docs], [k.name for _, k in kw.get("files", ())]))
            return real(name, docs, results, **kw)

        monkeypatch.setattr(monitor.store, "save", spy)
        assert monitor.run(once=True).stored == 15
        assert [sorted(ids, key=lambda i: int(i[1:])) for ids, _ in commits] == [
            ["n0", "n1", "n2", "n3"],
            ["n4", "n5", "n6", "n7"],
            ["n8", "n9", "n10", "n11"],
            ["n12", "n13", "n14"],
        ]
        assert [names for _, names in commits] == [
            ["f000.jsonl"],
            [],
            ["f001.jsonl"],  # f001's last lines fill the third batch exactly
            ["f002.jsonl", "f003.jsonl", "f004.jsonl"],
        ]
        assert counting.calls == [4, 4, 4, 3]
        assert read_names(monitor, inbox) == set(files)


def test_ids_repeated_across_files_of_one_batch_count_once(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jsonl").write_text(news(1) + news(2), encoding="utf-8")
    (inbox / "b.jsonl").write_text(news(2) + news(3), encoding="utf-8")
    with Monitor(config(tmp_path, inbox), classifier=CountingClassifier()) as monitor:
        result = monitor.run(once=True)
        assert (result.stored, result.duplicates) == (3, 1)


# -- 2. a kill between files --------------------------------------------------------------------


@pytest.mark.parametrize("where", ["classify", "commit", "stop"])
def test_a_kill_between_batches_stores_a_files_documents_iff_it_is_recorded_read(
    tmp_path: Path, monkeypatch, where: str
) -> None:
    """Small files, several to a batch (5 lines): the third batch fails (in the forward pass, or
    in its commit after its documents were inserted) or the monitor is stopped after the first.
    No file is recorded read without its documents, none has documents without its record, and
    a restart stores the rest once."""
    monkeypatch.setattr(monitor_module, "CHUNK_DOCS", 5)
    inbox = tmp_path / "inbox"
    files = write_files(inbox, [1, 2, 1, 3, 1, 1, 2, 1, 1, 1, 2, 1])  # 17 lines
    cfg = config(tmp_path, inbox)
    counting = CountingClassifier(fail_at=3 if where == "classify" else None)
    with Monitor(cfg, classifier=counting) as monitor:
        if where == "commit":
            real, commits = monitor.store._exec, []

            def failing(conn: Any, sql: str, params: Any = ()) -> Any:
                if sql == INSERT_FILE:
                    commits.append(params[2])
                    if len(set(commits)) == 4:  # in the third batch, its documents inserted
                        raise RuntimeError("killed")
                return real(conn, sql, params)

            monkeypatch.setattr(monitor.store, "_exec", failing)
        if where == "stop":
            stop = monitor_module.threading.Event()
            monitor.on_ingest = lambda results: stop.set()
            monitor.run(once=True, stop=stop)
        else:
            with pytest.raises(RuntimeError, match="killed"):
                monitor.run(once=True)
        read = assert_consistent(monitor, inbox, files)
        assert read and read != set(files)
        before = len(stored_ids(monitor))
    with Monitor(cfg, classifier=CountingClassifier()) as monitor:
        result = monitor.run(once=True)
        assert (result.stored, result.duplicates) == (17 - before, 0)
        assert stored_ids(monitor) == {i for ids in files.values() for i in ids}
        assert assert_consistent(monitor, inbox, files) == set(files)


def test_a_file_failing_part_way_is_dropped_from_the_batch_and_the_others_go_on(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    inbox = tmp_path / "inbox"
    files = write_files(inbox, [1, 3, 1])
    real = monitor_module.file_lines

    def breaking(path: Path, **kw: Any) -> Iterator[Line]:
        lines = real(path, **kw)
        if path.name == "f001.jsonl":
            yield next(lines)
            raise PermissionError(13, "Permission denied")
        yield from lines

    monkeypatch.setattr(monitor_module, "file_lines", breaking)
    caplog.set_level(logging.WARNING)
    with Monitor(config(tmp_path, inbox), classifier=CountingClassifier()) as monitor:
        assert monitor.poll().stored == 2
        assert monitor.poll().stored == 0  # tried again, warned once
        assert caplog.text.count("f001.jsonl: cannot be read (Permission denied)") == 1
        assert assert_consistent(monitor, inbox, files) == {"f000.jsonl", "f002.jsonl"}
        monkeypatch.setattr(monitor_module, "file_lines", real)
        assert monitor.poll().stored == 3
        assert assert_consistent(monitor, inbox, files) == set(files)


def test_a_malformed_line_in_a_batch_is_skipped_counted_and_named_once(tmp_path: Path, caplog) -> None:
    inbox = tmp_path / "inbox"
    files = write_files(inbox, [1, 1])
    with open(inbox / "f001.jsonl", "a", encoding="utf-8") as fh:
        fh.write("not json\n" + news(9))
    caplog.set_level(logging.WARNING)
    with Monitor(config(tmp_path, inbox), classifier=CountingClassifier()) as monitor:
        result = monitor.run(once=True)
        assert (result.stored, result.skipped) == (3, 1)
        assert [r.getMessage().split(":")[0] for r in caplog.records if "skipped" in r.getMessage()] == [
            f"{inbox.resolve() / 'f001.jsonl'} line 2"
        ]
        assert read_names(monitor, inbox) == set(files)


# -- 3. the listing ------------------------------------------------------------------------------


def glob_listing(folder: Path, pattern: str) -> list[FileKey]:
    """What the listing gave when it was ``Path.glob`` + ``is_file`` + ``stat`` (before scandir)."""
    return [
        FileKey(p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.glob(pattern)
        if not p.name.startswith(".") and p.suffix != ".tmp" and p.is_file()
    ]


def test_the_scandir_listing_lists_what_glob_listed(tmp_path: Path) -> None:
    for name in ("a.jsonl", ".hidden.jsonl", "b.jsonl.tmp", "c.tmp", "notes.txt", "B.JSONL"):
        (tmp_path / name).write_text(news(1), encoding="utf-8")
    (tmp_path / "d.jsonl").mkdir()  # a folder matching the pattern
    os.symlink(tmp_path / "a.jsonl", tmp_path / "link.jsonl")  # followed, as is_file() does
    os.symlink(tmp_path / "gone", tmp_path / "dangling.jsonl")
    os.symlink(tmp_path / "d.jsonl", tmp_path / "dirlink.jsonl")
    for pattern in ("*.jsonl", "a.jsonl", "[ab]*", "*"):
        assert sorted(list_files(tmp_path, pattern), key=lambda k: k.name) == sorted(
            glob_listing(tmp_path, pattern), key=lambda k: k.name
        ), pattern
    assert sorted(k.name for k in list_files(tmp_path, "*.jsonl")) == ["a.jsonl", "link.jsonl"]


def test_the_listing_passes_over_a_file_moved_away_after_it(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a.jsonl").write_text(news(1), encoding="utf-8")
    real = os.scandir

    class Gone:
        name = "b.jsonl"

        def is_file(self) -> bool:
            return True

        def stat(self) -> os.stat_result:
            raise FileNotFoundError("b.jsonl")

    class Listing:
        def __init__(self, folder: Path) -> None:
            self._entries = real(folder)

        def __enter__(self) -> Iterator[Any]:
            return iter([*self._entries.__enter__(), Gone()])

        def __exit__(self, *exc: object) -> None:
            self._entries.__exit__(*exc)

    monkeypatch.setattr(os, "scandir", Listing)
    assert [k.name for k in list_files(tmp_path, "*.jsonl")] == ["a.jsonl"]


# -- 4. trend by topic and company ----------------------------------------------------------------


@pytest.fixture
def store(monitor_store):  # type: ignore[no-untyped-def]
    """The monitor store (conftest ``monitor_store``: SQLite and PostgreSQL)."""
    return monitor_store


def test_buckets_by_topic_and_company_count_the_companys_documents_on_that_topic(store) -> None:
    docs, results = [], []
    for i, (minutes, topic, companies, negative) in enumerate(
        [
            (0, "earnings", ("acme",), True),
            (10, "earnings", ("acme", "globex"), False),
            (20, "rates", ("acme",), True),  # acme, another topic
            (70, "earnings", ("acme",), True),
            (80, "earnings", ("globex",), True),  # the topic, another company
            (90, None, ("acme",), False),
        ]
    ):
        docs.append(Document(id=f"d{i}", time=T0 + timedelta(minutes=minutes), text="t", topic=topic))
        results.append(Classified("x", 0.9, negative, topic, companies))
    store.save("markets", docs, results)
    store.register_monitor("other")  # the same ids under another monitor, on another topic
    store.save("other", docs, [Classified("x", 0.9, True, "rates", r.companies) for r in results])
    hour = int(T0.timestamp()) // 3600
    got = store.bucket_counts("markets", bucket_s=3600, topic="earnings", company="acme")
    assert got == [(hour, 2, 1), (hour + 1, 1, 1)]
    start = int((T0 + timedelta(minutes=60)).timestamp())
    assert store.bucket_counts(
        "markets", bucket_s=3600, topic="earnings", company="acme", start_epoch=start
    ) == [(hour + 1, 1, 1)]
    assert store.bucket_counts("other", bucket_s=3600, topic="earnings", company="acme") == []
    assert store.bucket_counts("markets", bucket_s=3600, topic="rates", company="globex") == []


def test_topic_and_company_buckets_look_documents_up_by_primary_key_in_sqlite(
    tmp_path: Path, monkeypatch
) -> None:
    """No list of every document of the topic (``LIST SUBQUERY`` over the topic index)."""
    db = tmp_path / "monitor.db"
    store = open_monitor_store(str(db))
    try:
        store.register_monitor("markets")
        queries: list[tuple[str, list[Any]]] = []
        real = store._exec

        def spy(conn: Any, sql: str, params: Any = ()) -> Any:
            queries.append((sql, list(params)))
            return real(conn, sql, params)

        monkeypatch.setattr(store, "_exec", spy)
        store.bucket_counts("markets", bucket_s=3600, topic="earnings", company="acme")
    finally:
        store.close()
    [(sql, params)] = [q for q in queries if "GROUP BY b" in q[0]]
    with sqlite3.connect(db) as conn:
        plan = " | ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "LIST SUBQUERY" not in plan, plan
    assert "tunelab_monitor_documents_topic" not in plan, plan
    assert "CORRELATED" in plan and "(monitor=? AND id=?)" in plan, plan
    assert "tunelab_monitor_companies_company" in plan, plan
