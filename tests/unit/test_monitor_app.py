"""The monitor end to end with stand-in models: sources -> classify -> store -> windows -> alerts,
restarts, bad input, the CLI (``--once``, SIGTERM, report). The real tiny runs are exercised in
test_monitor_models.py; here the predictors are small fakes with the ``Predictor`` interface, so
these tests take a fraction of a second each."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tunelab.apps.monitor import (
    Classifier,
    Monitor,
    MonitorConfig,
    Topic,
    UnknownMonitorError,
    normalise_company,
    open_monitor_store,
    trend,
)
from tunelab.cli import monitor_cmd
from tunelab.errors import ConfigError, DataError
from tunelab.serve.store import StoreError

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
COMPANIES = ("Acme Corp", "Globex", "Initech Inc.")
DETECTOR = {"window": "10m", "step": "1m", "baseline": "2h", "min_history": 0.5, "min_volume": 4}


class FakeSentiment:
    """Negative when the text says "falls" or "lawsuit"."""

    labels = SimpleNamespace(names=["negative", "neutral", "positive"])
    task_name = "single_label"

    def predict(self, texts, batch_size=64):
        return [
            {"label": "negative" if ("falls" in t or "lawsuit" in t) else "positive", "score": 0.9}
            for t in texts
        ]


class FakeNER:
    """Finds the names in COMPANIES as ORG entities (and "Paris" as a LOC, to be ignored)."""

    def predict(self, texts, batch_size=64):
        out = []
        for t in texts:
            found = [(n, "ORG") for n in COMPANIES if n in t] + ([("Paris", "LOC")] if "Paris" in t else [])
            out.append(
                {
                    "entities": [
                        {
                            "text": n,
                            "label": label,
                            "start": t.index(n),
                            "end": t.index(n) + len(n),
                            "score": 0.9,
                        }
                        for n, label in found
                    ]
                }
            )
        return out


VOCAB = ["profit", "revenue", "rate", "inflation", "lawsuit", "court"]


def fake_embed(texts: list[str]) -> np.ndarray:
    """Unit bag-of-words vectors over VOCAB (a text with none of the words points elsewhere)."""
    rows = []
    for t in texts:
        v = np.array([float(w in t.lower()) for w in VOCAB] + [0.1])
        rows.append(v / np.linalg.norm(v))
    return np.array(rows)


def classifier(**kwargs) -> Classifier:
    topics = [Topic("earnings", "profit revenue"), Topic("rates", "rate inflation")]
    defaults = {"ner": FakeNER(), "topics": topics, "embed": fake_embed, "min_similarity": 0.5}
    return Classifier(FakeSentiment(), **{**defaults, **kwargs})


def config(tmp_path: Path, **raw) -> MonitorConfig:
    base = {
        "name": "markets",
        "store": str(tmp_path / "monitor.db"),
        "sources": [{"follow": str(tmp_path / "news.jsonl")}],
        "runs": {"sentiment": "runs/unused"},
        "detector": DETECTOR,
        "poll": "1s",
    }
    return MonitorConfig.from_dict({**base, **raw})


def doc(i: int, minute: float, text: str, **extra) -> dict:
    return {"id": f"n{i}", "time": (T0 + timedelta(minutes=minute)).isoformat(), "text": text, **extra}


def calm_and_surge(surge: bool = True) -> list[dict]:
    """3 hours of one Acme earnings item every 30 s, one in five negative; then (surge) four extra
    negative ones a minute from minute 150 to 165."""
    docs = []
    for i in range(360):
        text = "Acme Corp shares falls on profit" if i % 5 == 0 else "Acme Corp revenue steady"
        docs.append(doc(i, i / 2, text, topic="earnings"))
    if surge:
        for j in range(60):
            docs.append(doc(1000 + j, 150 + j / 4, "Acme Corp lawsuit: shares falls", topic="earnings"))
    return sorted(docs, key=lambda d: d["time"])


def write_jsonl(path: Path, docs: list[dict], mode: str = "w") -> None:
    with open(path, mode, encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps(d) + "\n")


# -- classification ----------------------------------------------------------------------------------


def test_companies_are_normalised_to_one_name() -> None:
    for name in ("Acme Corp.", "ACME Corporation", "Acme's", " acme  inc ", "Acme Holdings Inc."):
        assert normalise_company(name) == "acme", name
    assert normalise_company("Deutsche Bank AG") == "deutsche bank"
    # to a fixed point however many forms and possessives are stacked (four rounds stopped early)
    assert normalise_company("Acme Inc's Corp's Ltd's Group's AG's") == "acme"
    assert normalise_company("Co") == "co"  # a legal form alone is a name
    assert normalise_company("...") is None
    assert normalise_company("Alphabet Inc", {"alphabet": "google"}) == "google"
    # a legal form removed bares a possessive: one call reaches the form a second call keeps
    for name in ("McDonald's Corp", "Macy's Inc.", "Acme Corp.'s", "Lloyd's of London"):
        key = normalise_company(name)
        assert key is not None and normalise_company(key) == key, name
    assert normalise_company("McDonald's Corp") == "mcdonald"


def test_the_trend_of_an_alias_is_the_trend_of_the_name_it_is_followed_under(tmp_path: Path) -> None:
    from tunelab.apps.monitor import trend

    cfg = config(tmp_path, companies={"aliases": {"Globex": "Acme"}})
    with Monitor(cfg, classifier=classifier(aliases=cfg.aliases)) as m:
        m.ingest_batch([doc(i, i, "Globex Corp revenue steady") for i in range(3)])
        by_alias = trend(m.store, "markets", company="Globex", bucket="1d", aliases=cfg.aliases)
        by_name = trend(m.store, "markets", company="Acme", bucket="1d")
    assert sum(b["count"] for b in by_name["buckets"]) == 3
    assert by_alias["buckets"] == by_name["buckets"]


def test_topics_come_from_the_run_else_the_document_else_zero_shot() -> None:
    from tunelab.apps.monitor.documents import parse_document

    docs = [
        parse_document({"id": "1", "time": 0, "text": "record profit and revenue"}),
        parse_document({"id": "2", "time": 0, "text": "inflation lifts the rate"}),
        parse_document({"id": "3", "time": 0, "text": "a football match in Paris"}),
        parse_document({"id": "4", "time": 0, "text": "Globex lawsuit", "topic": "legal"}),
    ]
    out = classifier().classify(docs)
    assert [r.topic for r in out] == ["earnings", "rates", "other", "legal"]
    assert [r.companies for r in out] == [(), (), (), ("globex",)]  # Paris is a LOC: not a company
    assert [r.negative for r in out] == [False, False, False, True]
    topic_run = SimpleNamespace(predict=lambda texts, batch_size=64: [{"label": "macro"} for _ in texts])
    assert {r.topic for r in classifier(topic=topic_run).classify(docs)} == {"macro"}
    assert [r.topic for r in classifier(topics=[]).classify(docs)] == [None, None, None, "legal"]


def test_an_entity_span_too_long_for_the_database_index_is_no_company() -> None:
    from tunelab.apps.monitor.documents import parse_document

    runaway = "Acme " * 50  # 250 characters marked as one ORG
    text = f"{runaway} and Globex"
    ner = SimpleNamespace(
        predict=lambda texts, batch_size=64: [
            {"entities": [{"text": runaway, "label": "ORG"}, {"text": "Globex", "label": "ORG"}]}
            for _ in texts
        ]
    )
    [out] = classifier(ner=ner).classify([parse_document({"id": "1", "time": 0, "text": text})])
    assert out.companies == ("globex",)


def test_a_negative_label_the_run_does_not_have_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="negative_label: 'bearish' is not a label of the sentiment run"):
        Classifier(FakeSentiment(), negative_label="bearish")


# -- sources, store, restarts ------------------------------------------------------------------------


def test_a_followed_file_is_ingested_once_across_restarts_and_bad_lines_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path)
    news = tmp_path / "news.jsonl"
    docs = calm_and_surge(surge=False)[:40]
    write_jsonl(news, docs[:20])
    with open(news, "a", encoding="utf-8") as fh:
        fh.write('{"id": "bad", "time": "someday", "text": "x"}\n{not json\n')
        fh.write(json.dumps(doc(99, 1, "long " * 5000)) + "\n")
    with caplog.at_level(logging.WARNING), Monitor(cfg, classifier=classifier()) as monitor:
        first = monitor.run(once=True)
    assert (first.stored, first.skipped) == (20, 3)  # the stream went on past each bad line
    assert f"{news.resolve()} line 21: document 'bad': time 'someday' is not ISO 8601" in caplog.text
    assert f"{news.resolve()} line 22: not JSON" in caplog.text
    assert (
        f"{news.resolve()} line 23: document 'n99': text has 25,000 characters, over the limit" in caplog.text
    )
    write_jsonl(news, docs[20:] + docs[:5], mode="a")  # 20 new, 5 sent again
    with open(news, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(docs[0])[:15])  # a line still being written
    with Monitor(cfg, classifier=classifier()) as monitor:  # a restart
        second = monitor.run(once=True)
        assert (second.stored, second.duplicates, second.skipped) == (20, 5, 0)
        assert monitor.store.count("markets") == 40
        assert monitor.store.position("markets", str(news.resolve())).line == 48


def fail_saves(monkeypatch: pytest.MonkeyPatch, store, times: int = 1, when=lambda alerts: True) -> list[int]:
    """Make ``store.save`` raise ``StoreError`` (the database down for a moment) ``times`` times, for
    the saves ``when(alerts)`` picks; returns the list the failures are counted in."""
    real, failed = store.save, []

    def save(name, docs, results, *, alerts=(), **kwargs):
        alerts = list(alerts)
        if len(failed) < times and when(alerts):
            failed.append(1)
            raise StoreError("database is down")
        return real(name, docs, results, alerts=alerts, **kwargs)

    monkeypatch.setattr(store, "save", save)
    return failed


def test_a_followed_chunk_whose_commit_failed_is_read_again_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path)
    news = tmp_path / "news.jsonl"
    docs = calm_and_surge(surge=False)[:30]
    write_jsonl(news, docs[:10])
    with Monitor(cfg, classifier=classifier()) as monitor:
        assert monitor.run(once=True).stored == 10
        write_jsonl(news, docs[10:20], mode="a")
        failed = fail_saves(monkeypatch, monitor.store)
        with pytest.raises(StoreError):
            monitor.run(once=True)
        assert failed and monitor.store.count("markets") == 10
        write_jsonl(news, docs[20:], mode="a")
        # A served monitor's follower thread calls run() again on the same Monitor.
        assert monitor.run(once=True).stored == 20
        assert monitor.store.existing_ids("markets", [d["id"] for d in docs]) == {d["id"] for d in docs}


def test_a_line_whose_time_overflows_or_that_nests_too_deep_is_skipped_and_the_stream_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    news = tmp_path / "news.jsonl"
    docs = calm_and_surge(surge=False)[:4]
    write_jsonl(news, [*docs[:2], {"id": "x", "time": "0001-01-01T00:00:00+01:00", "text": "hi"}])
    with open(news, "a", encoding="utf-8") as fh:
        fh.write("[" * 100_000 + "\n")
    write_jsonl(news, docs[2:], mode="a")
    with caplog.at_level(logging.WARNING), Monitor(config(tmp_path), classifier=classifier()) as monitor:
        result = monitor.run(once=True)
        assert (result.stored, result.skipped) == (4, 2)
        assert monitor.store.existing_ids("markets", [d["id"] for d in docs]) == {d["id"] for d in docs}
    assert "line 3: document 'x': time '0001-01-01T00:00:00+01:00' is out of the range" in caplog.text
    assert "line 4: not JSON this reader takes (nested too deeply)" in caplog.text


def test_a_folder_reads_each_file_once_across_restarts(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = config(tmp_path, sources=[{"directory": str(inbox)}])
    docs = calm_and_surge(surge=False)[:30]
    write_jsonl(inbox / "a.jsonl", docs[:10])
    write_jsonl(inbox / "b.jsonl", docs[5:20])
    with Monitor(cfg, classifier=classifier()) as monitor:
        result = monitor.run(once=True)
    assert (result.stored, result.duplicates) == (20, 5)
    write_jsonl(inbox / "c.jsonl", docs[20:])
    with Monitor(cfg, classifier=classifier()) as monitor:
        result = monitor.run(once=True)
        assert (result.stored, result.duplicates) == (10, 0)  # a.jsonl and b.jsonl are not read again
        assert monitor.store.count("markets") == 30


def test_a_file_whose_name_is_not_utf8_is_skipped_and_the_others_are_read(tmp_path: Path, caplog) -> None:
    """The store could not take the name: every source failed, at every restart."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = config(tmp_path, sources=[{"directory": str(inbox)}])
    docs = calm_and_surge(surge=False)[:20]
    write_jsonl(inbox / "good.jsonl", docs[:10])
    latin1 = os.fsdecode(b"r\xe9sultats.jsonl")  # a Latin-1 name on a UTF-8 system
    write_jsonl(inbox / latin1, docs[10:])
    with Monitor(cfg, classifier=classifier()) as monitor:
        result = monitor.run(once=True)
    assert result.stored == 10
    assert "skipped: its name is not UTF-8" in caplog.text and "sultats.jsonl" in caplog.text


def test_a_folder_asks_the_store_only_about_files_it_does_not_know_as_read(
    tmp_path: Path, monkeypatch
) -> None:
    """Polling once a second must not read every file the folder ever had from the store."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = config(tmp_path, sources=[{"directory": str(inbox)}])
    docs = calm_and_surge(surge=False)[:40]
    write_jsonl(inbox / "a.jsonl", docs[:10])
    write_jsonl(inbox / "b.jsonl", docs[10:20])
    first = Monitor(cfg, classifier=classifier())
    # ``second`` stands for another writer of the same store that holds no lease (a release from
    # before the lease): the store, not this process's memory alone, says which files were read.
    with monkeypatch.context() as patch:
        patch.setattr(
            "tunelab.apps.monitor.monitor.take_lease",
            lambda store, name: SimpleNamespace(check=lambda: None, release=lambda: None),
        )
        second = Monitor(cfg, classifier=classifier())
    with first, second:
        asked: list[list[str] | None] = []
        real = first.store.seen_files

        def spy(name: str, folder: str, names=None) -> set:
            asked.append(None if names is None else sorted(names))
            return real(name, folder, names)

        monkeypatch.setattr(first.store, "seen_files", spy)
        assert first.poll().stored == 20
        assert asked == [["a.jsonl", "b.jsonl"]]
        asked.clear()
        assert first.poll().stored == 0
        assert asked == []  # nothing new in the folder: no store read at all
        write_jsonl(inbox / "c.jsonl", docs[20:30])
        assert first.poll().stored == 10
        assert asked == [["c.jsonl"]]
        # Another process on the same store read d.jsonl: the store says so, it is not read again.
        write_jsonl(inbox / "d.jsonl", docs[30:])
        assert second.poll().stored == 10
        result = first.poll()
        assert (result.stored, result.duplicates) == (0, 0)
        # A file gone from the folder is forgotten (memory follows the folder, not its history).
        (inbox / "a.jsonl").unlink()
        first.poll()
        seen = first._seen_files[(inbox.resolve(), "*.jsonl")]
        assert [k.name for k in seen._read if k.name == "a.jsonl"] == []


def test_two_sources_on_one_folder_keep_their_own_read_files(tmp_path: Path, monkeypatch) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sources = [{"directory": str(inbox)}, {"directory": str(inbox), "pattern": "a*.jsonl"}]
    docs = calm_and_surge(surge=False)[:20]
    write_jsonl(inbox / "a.jsonl", docs[:10])
    write_jsonl(inbox / "b.jsonl", docs[10:])
    with Monitor(config(tmp_path, sources=sources), classifier=classifier()) as monitor:
        assert monitor.poll().stored == 20
        asked: list[object] = []
        real = monitor.store.seen_files
        monkeypatch.setattr(monitor.store, "seen_files", lambda *a: asked.append(a) or real(*a))
        for _ in range(2):
            assert monitor.poll().stored == 0
        assert asked == []  # neither source forgets the files the other does not list


def test_batches_are_all_or_nothing_and_ids_count_once(tmp_path: Path) -> None:
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:
        docs = calm_and_surge(surge=False)[:5]
        assert monitor.ingest_batch(docs + docs[:2]).to_dict() == {
            "stored": 5,
            "duplicates": 2,
            "skipped": 0,
            "alerts": [],
        }
        assert monitor.ingest_batch(docs).stored == 0
        with pytest.raises(DataError, match=r"^documents\[1\]: no id"):
            monitor.ingest_batch([doc(50, 1, "fine"), {"time": 1, "text": "no id"}])
        # Another name: a second Monitor of "markets" on this store is refused (one ingests a monitor).
        with Monitor(config(tmp_path, name="short", max_text_chars=10), classifier=classifier()) as short:
            with pytest.raises(DataError, match=r"^documents\[0\]: document 'n51': text has 30 characters"):
                short.ingest_batch([doc(51, 1, "x" * 30)])
            assert short.store.existing_ids("short", ["n51"]) == set()
        assert monitor.store.existing_ids("markets", ["n50", "n51"]) == set()


def test_a_surge_alerts_once_with_its_documents_even_across_a_restart(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    docs = calm_and_surge()
    cut = next(i for i, d in enumerate(docs) if d["id"] == "n1030")  # 30 surge documents in
    write_jsonl(tmp_path / "news.jsonl", docs[:cut])
    with Monitor(cfg, classifier=classifier()) as monitor:
        first = monitor.run(once=True)
    # Every document is about Acme and earnings: both keys surge, one alert each.
    assert sorted(a.key for a in first.alerts) == ["company:acme", "topic:earnings"]
    surge_ids = {d["id"] for d in docs if d["id"].startswith("n1") and len(d["id"]) == 5}
    for alert in first.alerts:
        assert alert.ended_at is None and alert.kind in ("negative_share", "negative_volume")
        assert set(alert.docs) & surge_ids and alert.observed > alert.baseline
    write_jsonl(tmp_path / "news.jsonl", docs[cut:], mode="a")
    with Monitor(cfg, classifier=classifier()) as monitor:  # restarted mid-episode
        second = monitor.run(once=True)
        stored = monitor.store.alerts("markets")
        pending = monitor.store.pending_alerts("markets")
    assert second.alerts == []  # the episode was open when it stopped: no second alert
    assert {a.id for a in stored} == {a.id for a in first.alerts} == {a.id for a in pending}
    assert all(a.ended_at is not None for a in stored)  # the surge ended within the stream


def test_a_batch_whose_commit_failed_counts_once_and_its_alert_is_stored_on_the_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = calm_and_surge()
    (tmp_path / "ref").mkdir()
    keys = ("topic:earnings", "company:acme")
    with (
        Monitor(config(tmp_path / "ref", sources=[]), classifier=classifier()) as ref,
        Monitor(config(tmp_path, sources=[]), classifier=classifier()) as monitor,
    ):
        failed = fail_saves(monkeypatch, monitor.store, when=bool)  # the save that opens the alerts
        for start in range(0, len(docs), 10):
            batch = docs[start : start + 10]
            expected = ref.ingest_batch(batch)
            try:
                got = monitor.ingest_batch(batch)
            except StoreError:
                got = monitor.ingest_batch(batch)  # the client's retry after the 503
                assert sorted(a.key for a in got.alerts) == sorted(keys)
                pending = monitor.store.pending_alerts("markets")
                assert {a.id for a in pending} == {a.id for a in got.alerts}
                assert all(a.ended_at is None for a in pending)
            assert got.to_dict() == expected.to_dict()
            assert [monitor.detector.window(k) for k in keys] == [ref.detector.window(k) for k in keys]
        assert failed and monitor.detector.late == ref.detector.late
        assert [a.to_dict() for a in monitor.store.alerts("markets")] == [
            a.to_dict() for a in ref.store.alerts("markets")
        ]


TYPO = {"id": "typo", "time": "2062-03-02T07:00:00Z", "text": "Acme Corp revenue steady", "topic": "earnings"}


def test_a_document_dated_far_ahead_of_the_clock_is_refused_and_the_surge_still_alerts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = calm_and_surge()
    write_jsonl(tmp_path / "news.jsonl", [*docs[:100], TYPO, *docs[100:]])  # 2062 for 2026
    with caplog.at_level(logging.WARNING), Monitor(config(tmp_path), classifier=classifier()) as monitor:
        result = monitor.run(once=True)
        assert (result.stored, result.skipped, monitor.detector.late) == (len(docs), 1, 0)
        assert sorted(a.key for a in monitor.store.alerts("markets")) == ["company:acme", "topic:earnings"]
        with pytest.raises(
            DataError, match=r"^documents\[1\]: document 'typo': time 2062-03-02T07:00:00\+00:00 is after"
        ):
            monitor.ingest_batch([doc(2000, 10, "fine"), TYPO])
        assert monitor.store.existing_ids("markets", ["typo", "n2000"]) == set()
    assert "line 101: document 'typo': time 2062-03-02T07:00:00+00:00 is after" in caplog.text
    assert "further ahead of the clock than max_future allows" in caplog.text
    (tmp_path / "lax").mkdir()
    # max_future is the monitor's to set, under half the detector's window (a year's needs windows
    # of years: a document that far ahead would move every key's window on by as much)
    huge = {"window": "8000w", "step": "8w", "baseline": "16000w"}
    with Monitor(config(tmp_path / "lax", max_future="2000w", detector=huge), classifier=classifier()) as lax:
        assert lax.ingest_batch([TYPO]).stored == 1
    with pytest.raises(ConfigError, match="max_future: 'soon' is not a duration"):
        config(tmp_path, max_future="soon")
    # accepted before, then every document failed (now + the delta overflows a datetime)
    with pytest.raises(ConfigError, match=r"max_future: '3000000d' is over 36500d \(a hundred years\)"):
        config(tmp_path, max_future="3000000d")
    with pytest.raises(ConfigError, match="name"):
        config(tmp_path, name="markets\n")  # re.match's $ let a trailing newline through


def test_a_stored_document_dated_ahead_of_the_clock_is_left_out_of_the_warm_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tunelab.apps.monitor import check_batch

    docs = calm_and_surge()
    cut = next(i for i, d in enumerate(docs) if d["id"] == "n1000")  # the surge's first document
    cfg = config(tmp_path, sources=[])
    with Monitor(cfg, classifier=classifier()) as monitor:
        monitor.ingest_batch(docs[:cut])
        typo = check_batch([TYPO])  # stored before max_future was checked, by an older version
        monitor.store.save("markets", typo, classifier().classify(typo))
    with caplog.at_level(logging.WARNING), Monitor(cfg, classifier=classifier()) as monitor:  # a restart
        opened = [
            a.key for i in range(cut, len(docs), 10) for a in monitor.ingest_batch(docs[i : i + 10]).alerts
        ]
        assert sorted(opened) == ["company:acme", "topic:earnings"] and monitor.detector.late == 0
    assert "stored documents dated up to 2062-03-02T07:00:00+00:00 are further ahead" in caplog.text


def test_replaying_the_same_stream_gives_the_same_alerts(tmp_path: Path) -> None:
    alerts = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        write_jsonl(folder / "news.jsonl", calm_and_surge())
        with Monitor(config(folder), classifier=classifier()) as monitor:
            monitor.run(once=True)
            alerts.append([a.to_dict() for a in monitor.store.alerts("markets")])
    assert alerts[0] == alerts[1] and alerts[0]


# -- config and bad input ----------------------------------------------------------------------------


def _config_problems(bad: Path, text: str) -> str:
    """The one-line ConfigError that ``text``, written to ``bad``, is refused with."""
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        MonitorConfig.from_yaml(bad)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_config_problems_are_reported_together_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "monitor.yaml"
    message = _config_problems(
        bad,
        "name: Markets Desk\nsources: [{follow: a, directory: b}]\nruns: {}\n"
        "topics: [earnings, earnings]\ndetector: {window: soon, threshold: 0}\ncolour: red\n",
    )
    assert message.startswith(f"{bad}: ")
    for part in (
        "unknown field colour",
        "name: 'Markets Desk' must be lower-case",
        "sources[0]: give exactly one of follow",
        "runs.sentiment: required",
        "topics[1]: 'earnings' is listed twice",
        "detector.window: 'soon' is not a duration",
        "detector.threshold: 0 must be a number > 0",
    ):
        assert part in message, part
    with pytest.raises(ConfigError, match="monitor config not found"):
        MonitorConfig.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("name: [", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1: not valid YAML"):
        MonitorConfig.from_yaml(tmp_path / "broken.yaml")


def test_yaml_keys_that_are_not_text_and_a_bad_webhook_port_are_one_line(tmp_path: Path) -> None:
    """``on:`` stays the text it is (YAML 1.1 read True) and ``1:`` is 1; a method given as a list; a
    port not a number."""
    message = _config_problems(
        tmp_path / "monitor.yaml",
        "name: desk\nsources: [{follow: a.jsonl, 1: x}]\nruns: {sentiment: run}\non: yes\n"
        "detector: {method: [cusum]}\nwebhook: http://hooks.example.com:80x/alerts\n",
    )
    for part in (
        "unknown field on",
        "sources[0]: unknown field 1",
        "detector.method: ['cusum'] must be one of cusum, zscore",
        "webhook: 'http://hooks.example.com:80x/alerts' is not an http(s) URL",
    ):
        assert part in message, part


def test_a_source_that_does_not_exist_stops_the_run_before_anything_is_read(tmp_path: Path) -> None:
    with (
        Monitor(config(tmp_path), classifier=classifier()) as monitor,
        pytest.raises(ConfigError, match=r"sources\[0\]\.follow: .*news.jsonl does not exist"),
    ):
        monitor.run(once=True)
    folder = config(tmp_path, sources=[{"directory": str(tmp_path / "inbox")}])
    with pytest.raises(ConfigError, match=r"sources\[0\]\.directory: .*inbox does not exist"):
        folder.check_sources()


def test_an_unknown_monitor_is_named_with_the_known_ones(tmp_path: Path) -> None:
    with Monitor(config(tmp_path), classifier=classifier()):
        pass
    with (
        open_monitor_store(str(tmp_path / "monitor.db")) as store,
        pytest.raises(UnknownMonitorError, match=r"unknown monitor 'bonds' \(known: markets\)"),
    ):
        trend(store, "bonds")


# -- CLI ---------------------------------------------------------------------------------------------


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tunelab app")
    monitor_cmd.add_parser(parser.add_subparsers(dest="app"))
    return parser.parse_args(["monitor", *argv])


def write_config(tmp_path: Path, **raw: Any) -> Path:
    """``monitor.yaml`` following ``news.jsonl`` every second; ``raw`` replaces or adds settings."""
    path = tmp_path / "monitor.yaml"
    base = {
        "name": "markets",
        "store": str(tmp_path / "monitor.db"),
        "sources": [{"follow": str(tmp_path / "news.jsonl")}],
        "runs": {"sentiment": "runs/unused"},
        "detector": DETECTOR,
        "poll": "1s",
    }
    path.write_text(json.dumps({**base, **raw}), encoding="utf-8")  # JSON is YAML
    return path


def test_cli_run_once_then_report(tmp_path: Path, monkeypatch, capsys) -> None:
    import tunelab.apps.monitor.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "load_classifier", lambda cfg, ner=None: classifier())
    path = write_config(tmp_path)
    write_jsonl(tmp_path / "news.jsonl", calm_and_surge())
    assert monitor_cmd.run(cli_args("run", "--config", str(path), "--once")) == 0
    out = capsys.readouterr()
    assert "markets: 420 documents stored, 0 duplicates, 0 skipped, " in out.out
    assert f"database: SQLite {tmp_path / 'monitor.db'}" in out.err
    report = tmp_path / "report.html"
    assert monitor_cmd.run(cli_args("report", "--config", str(path), "--out", str(report))) == 0
    page = report.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3  # the whole feed, topic earnings, company acme
    assert "Alerts" in page and "n1000" in page and "Acme Corp lawsuit: shares falls" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    # a folder as --out: one line (it was "unexpected IsADirectoryError")
    with pytest.raises(DataError, match=r"a folder; give the report's file name, e\.g\. .*report\.html$"):
        monitor_cmd.run(cli_args("report", "--config", str(path), "--out", str(tmp_path)))


def test_a_report_replaces_only_an_earlier_report_of_its_monitor(tmp_path: Path, monkeypatch, capsys) -> None:
    """``--out train.csv`` was replaced by the HTML page, silently; rerunning must still refresh the
    report itself."""
    import tunelab.apps.monitor.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "load_classifier", lambda cfg, ner=None: classifier())
    path = write_config(tmp_path)
    write_jsonl(tmp_path / "news.jsonl", calm_and_surge())
    assert monitor_cmd.run(cli_args("run", "--config", str(path), "--once")) == 0
    report = tmp_path / "report.html"
    for _ in range(2):  # the second replaces the first: a report of this monitor
        assert monitor_cmd.run(cli_args("report", "--config", str(path), "--out", str(report))) == 0
    data = tmp_path / "train.csv"
    data.write_text("text,label\nmy row,positive\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"--out .*train\.csv exists and is not a report of monitor markets"):
        monitor_cmd.run(cli_args("report", "--config", str(path), "--out", str(data)))
    assert data.read_text(encoding="utf-8") == "text,label\nmy row,positive\n"
    args = cli_args("report", "--config", str(path), "--out", str(data), "--overwrite")
    assert monitor_cmd.run(args) == 0 and "<title>Monitor markets" in data.read_text(encoding="utf-8")


def test_a_report_plots_a_name_holding_dollar_signs_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    """matplotlib read "$...$" in a plot title as TeX: a topic named so failed every report."""
    import tunelab.apps.monitor.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "load_classifier", lambda cfg, ner=None: classifier())
    path = write_config(tmp_path)
    odd = [{**d, "id": f"odd{i}", "topic": "oil $\\x$ prices"} for i, d in enumerate(calm_and_surge()[:40])]
    write_jsonl(tmp_path / "news.jsonl", [*calm_and_surge(), *odd])
    assert monitor_cmd.run(cli_args("run", "--config", str(path), "--once")) == 0
    report = tmp_path / "report.html"
    assert monitor_cmd.run(cli_args("report", "--config", str(path), "--out", str(report))) == 0, (
        capsys.readouterr()
    )
    page = report.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 4 and "oil $\\x$ prices" in page  # and the whole feed


def test_a_report_with_one_document_dated_year_1_plots_the_recent_weeks(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """0001-01-01 stands for "unknown" in some feeds; the report still comes out, and says where
    its plots start."""
    import tunelab.apps.monitor.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "load_classifier", lambda cfg, ner=None: classifier())
    path = write_config(tmp_path)
    old = {"id": "ancient", "time": "0001-01-01T00:00:00Z", "text": "Acme Corp results: profit rises"}
    write_jsonl(tmp_path / "news.jsonl", [old, *calm_and_surge()])
    assert monitor_cmd.run(cli_args("run", "--config", str(path), "--once")) == 0
    report = tmp_path / "report.html"
    assert monitor_cmd.run(cli_args("report", "--config", str(path), "--out", str(report))) == 0
    page = report.read_text(encoding="utf-8")
    assert "421 documents from " in page
    assert "Plots start at 2023-11-13: older documents are counted above but not plotted" in page
    assert page.count("data:image/png;base64,") == 3  # the whole feed first


def test_cli_run_stops_cleanly_on_sigterm_having_committed_what_it_read(
    tmp_path: Path, monkeypatch, sigterm_self
) -> None:
    import tunelab.apps.monitor.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "load_classifier", lambda cfg, ner=None: classifier())
    path = write_config(tmp_path)
    docs = calm_and_surge(surge=False)[:50]
    write_jsonl(tmp_path / "news.jsonl", docs)

    def all_stored() -> bool:
        with open_monitor_store(str(tmp_path / "monitor.db")) as store:
            return store.count("markets") == 50

    sigterm_self.when(all_stored, timeout_s=20)
    before = signal.getsignal(signal.SIGTERM)
    assert monitor_cmd.run(cli_args("run", "--config", str(path))) == 0  # returns instead of dying
    sigterm_self.join()
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back
    with open_monitor_store(str(tmp_path / "monitor.db")) as store:
        assert store.count("markets") == 50
        news = (tmp_path / "news.jsonl").resolve()
        assert store.position("markets", str(news)).offset == news.stat().st_size


def test_tunelab_app_monitor_is_reachable_from_the_main_cli(tmp_path: Path, capsys) -> None:
    """``tunelab app monitor`` is wired into the real entry point, and a bad config is one line."""
    from tunelab.cli.main import main

    missing = tmp_path / "nope.yaml"
    assert main(["app", "monitor", "run", "--config", str(missing), "--once"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "Traceback" not in err


# -- review fixes: symlinks, skip counts, --once's unfinished line -----------------------------------


def test_a_followed_symlink_re_pointed_to_a_new_file_loses_nothing(tmp_path: Path) -> None:
    """Rotation by symlink: the old target's last lines are read before the new target's."""
    import os

    day1, day2, link = tmp_path / "day1.jsonl", tmp_path / "day2.jsonl", tmp_path / "news.jsonl"
    write_jsonl(day1, [doc(1, 1, "a"), doc(2, 2, "b")])
    os.symlink(day1, link)
    with Monitor(config(tmp_path), classifier=classifier()) as m:
        assert m.poll().stored == 2
        write_jsonl(day1, [doc(3, 3, "c"), doc(4, 4, "d")], mode="a")  # written before the switch
        write_jsonl(day2, [doc(5, 5, "e")])
        os.symlink(day2, tmp_path / "news.tmp")
        os.replace(tmp_path / "news.tmp", link)
        # the old target is read again a few times (its writer may finish a line) before it is left
        from tunelab.apps.monitor.sources import ROTATION_GRACE_READS

        stored = sum(m.poll().stored for _ in range(ROTATION_GRACE_READS + 2))
        ids = sorted(d["id"] for d in m.store.documents("markets", [f"n{i}" for i in range(1, 6)]))
    assert stored == 3 and ids == ["n1", "n2", "n3", "n4", "n5"]


def test_skipped_lines_are_counted_before_on_ingest_sees_the_batch(tmp_path: Path) -> None:
    """The server's metrics count in ``on_ingest``: a followed file's malformed line must be there."""
    (tmp_path / "news.jsonl").write_text(json.dumps(doc(1, 1, "ok")) + "\n{broken\n", encoding="utf-8")
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.jsonl").write_text("not json\n" + json.dumps(doc(2, 2, "fine")) + "\n", encoding="utf-8")
    cfg = config(tmp_path, sources=[{"follow": str(tmp_path / "news.jsonl")}, {"directory": str(folder)}])
    with Monitor(cfg, classifier=classifier()) as m:
        seen: list[tuple[int, int]] = []
        m.on_ingest = lambda results: seen.extend((r.stored, r.skipped) for r in results)
        result = m.poll()
        assert (result.stored, result.skipped) == (2, 2)
        assert sorted(seen) == [(1, 1), (1, 1)]
        assert m.totals.skipped == 2


def test_a_once_run_names_a_last_line_still_waiting_for_its_newline(tmp_path: Path, caplog) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text(json.dumps(doc(1, 1, "a")) + "\n" + json.dumps(doc(2, 2, "b")), encoding="utf-8")
    with caplog.at_level("WARNING"), Monitor(config(tmp_path), classifier=classifier()) as m:
        assert m.run(once=True).stored == 1
    assert any(
        "news.jsonl line 2" in r.getMessage() and "without a newline" in r.getMessage()
        for r in caplog.records
    )


def test_a_once_run_reads_past_a_rotation_to_the_new_file(tmp_path: Path) -> None:
    """A rotated file is read again a few polls before it is left (its writer may finish a line);
    a --once run, which stops at the first poll that finds nothing, then never reached the new file."""
    import os

    path = tmp_path / "news.jsonl"
    write_jsonl(path, [doc(1, 1, "a")])
    with Monitor(config(tmp_path), classifier=classifier()) as m:
        assert m.run(once=True).stored == 1
    write_jsonl(path, [doc(2, 2, "b")], mode="a")
    os.rename(path, tmp_path / "news.jsonl.1")
    write_jsonl(path, [doc(3, 3, "c")])
    with Monitor(config(tmp_path), classifier=classifier()) as m:
        assert m.run(once=True).stored == 2  # the rotated file's n2, then the new file's n3


def test_a_restart_replays_enough_history_to_alert_as_an_uninterrupted_run(tmp_path: Path) -> None:
    """The warm-up replays every bucket the detector holds: with less, the oldest baseline windows
    are part empty after a restart, the baseline is lower and alerts differ from a run's."""
    det = {**DETECTOR, "h": 9.6}
    calm = calm_and_surge(surge=False)
    old = [
        doc(5000 + j, 41 + j / 40, "Acme Corp lawsuit: shares falls", topic="earnings") for j in range(238)
    ]
    first = sorted(calm + old, key=lambda d: d["time"])
    surge = [
        doc(9000 + j, 180 + j * 2.5 / 11, "Acme Corp lawsuit: shares falls", topic="earnings")
        for j in range(11)
    ]

    def opened(folder: Path, restart: bool) -> list[tuple[str, str]]:
        folder.mkdir()
        cfg = config(folder, detector=det)
        m = Monitor(cfg, classifier=classifier())
        m.ingest_batch(first)
        if restart:
            m.close()
            m = Monitor(cfg, classifier=classifier())
        alerts = []
        for d in surge:
            alerts += m.ingest_batch([d]).alerts
        m.close()
        return [(a.key, a.started_at.isoformat()) for a in alerts]

    assert opened(tmp_path / "run", False) == opened(tmp_path / "restarted", True)


def test_a_late_document_never_ends_an_alert_before_it_started(tmp_path: Path) -> None:
    """A delayed source delivers older negative coverage: the baseline rises and the episode ends,
    at the newest time seen, not at the late document's own time (before the alert started)."""
    from datetime import timedelta

    m = Monitor(config(tmp_path), classifier=classifier())
    cut = (T0 + timedelta(minutes=153)).isoformat()
    assert m.ingest_batch([d for d in calm_and_surge() if d["time"] <= cut]).alerts
    late = [
        doc(7000 + j, 30 + j / 10, "Acme Corp lawsuit: shares falls", topic="earnings") for j in range(1150)
    ]
    m.ingest_batch(late)
    alerts = m.store.alerts("markets")
    m.close()
    assert any(a.ended_at is not None for a in alerts), "the late documents should have ended one"
    assert all(a.ended_at >= a.started_at for a in alerts if a.ended_at is not None)


# -- review fixes ----------------------------------------------------------------------------------


def test_a_symlink_re_pointed_to_another_folder_while_stopped_loses_nothing(tmp_path: Path) -> None:
    """news.jsonl -> archive/day1.jsonl, re-pointed to archive/day2.jsonl while stopped: day1's
    lines after the last commit (n3, n4) were lost, its old target not being beside the symlink."""
    archive = tmp_path / "archive"
    archive.mkdir()
    day1, day2, link = archive / "day1.jsonl", archive / "day2.jsonl", tmp_path / "news.jsonl"
    write_jsonl(day1, [doc(1, 1, "a"), doc(2, 2, "b")])
    os.symlink(day1, link)
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:
        monitor.poll()
    write_jsonl(day1, [doc(3, 3, "c"), doc(4, 4, "d")], "a")
    write_jsonl(day2, [doc(5, 5, "e")])
    os.symlink(day2, tmp_path / "news.tmp")
    os.replace(tmp_path / "news.tmp", link)
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:
        monitor.run(once=True)
        stored = monitor.store.documents("markets", [f"n{i}" for i in range(1, 6)])
    assert sorted(d["id"] for d in stored) == ["n1", "n2", "n3", "n4", "n5"]


def lock_files(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> set[Path]:
    """``open`` refuses ``paths`` in the monitor's modules, as a file mode would for another user
    (tests run as root, whom no mode refuses)."""
    import builtins

    import tunelab.apps.monitor.config as config_module
    import tunelab.apps.monitor.sources as sources

    locked = set(paths)

    def fake_open(path, *args, **kwargs):
        if Path(path) in locked:
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    for module in (sources, config_module):
        monkeypatch.setattr(module, "open", fake_open, raising=False)
    return locked


def test_a_followed_file_that_cannot_be_read_neither_fails_the_poll_nor_stops_the_next_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """logrotate's create 0600 root root: "unexpected PermissionError" out of poll(), and the folder
    after the followed file was never read."""
    news, inbox = tmp_path / "news.jsonl", tmp_path / "inbox"
    inbox.mkdir()
    write_jsonl(news, [doc(1, 0, "Acme Corp revenue")])
    cfg = config(tmp_path, sources=[{"follow": str(news)}, {"directory": str(inbox)}])
    with caplog.at_level(logging.WARNING), Monitor(cfg, classifier=classifier()) as monitor:
        assert monitor.poll(once=True).stored == 1
        os.rename(news, tmp_path / "news.jsonl.1")
        write_jsonl(news, [doc(2, 1, "Globex revenue")])
        write_jsonl(inbox / "a.jsonl", [doc(3, 2, "Initech Inc. revenue")])
        locked = lock_files(monkeypatch, news.absolute())
        assert monitor.poll(once=True).stored == 1  # the inbox's n3
        assert monitor.poll(once=True).stored == 0
        assert caplog.text.count("cannot be read (Permission denied)") == 1
        locked.clear()
        assert monitor.poll(once=True).stored == 1  # n2, once it can be read
        assert monitor.store.count("markets") == 3


def test_a_source_failing_with_an_os_error_is_warned_about_once_and_the_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "news.jsonl").write_text("", encoding="utf-8")
    write_jsonl(inbox / "a.jsonl", [doc(1, 0, "Acme Corp revenue")])
    cfg = config(tmp_path, sources=[{"follow": str(tmp_path / "news.jsonl")}, {"directory": str(inbox)}])

    def broken(source, *, once=False):
        raise OSError(5, "Input/output error")

    with caplog.at_level(logging.WARNING), Monitor(cfg, classifier=classifier()) as monitor:
        monkeypatch.setattr(monitor, "_follow", broken)
        assert monitor.poll().stored == 1 and monitor.poll().stored == 0
        assert caplog.text.count("Input/output error; the other sources go on") == 1
        assert f"follow {tmp_path / 'news.jsonl'}: Input/output error" in caplog.text

        def down(source, *, once=False):
            raise StoreError("database is down")

        monkeypatch.setattr(monitor, "_follow", down)
        with pytest.raises(StoreError, match="database is down"):  # the store's errors stop the poll
            monitor.poll()


def test_check_sources_refuses_a_source_that_cannot_be_read_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    news, inbox = tmp_path / "news.jsonl", tmp_path / "inbox"
    news.write_text("", encoding="utf-8")
    inbox.mkdir()
    lock_files(monkeypatch, news)
    with pytest.raises(
        ConfigError, match=r"sources\[0\]\.follow: .*news.jsonl cannot be read \(Permission denied\)"
    ):
        config(tmp_path).check_sources()
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == inbox:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(
        ConfigError, match=r"sources\[0\]\.directory: .*inbox cannot be read \(Permission denied\)"
    ):
        config(tmp_path, sources=[{"directory": str(inbox)}]).check_sources()


def test_an_unreadable_file_in_a_folder_is_warned_about_once_per_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """It was "cannot be read; skipped" on every poll, for ever."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    locked_file = inbox / "locked.jsonl"
    write_jsonl(locked_file, [doc(1, 0, "Acme Corp revenue")])
    locked = lock_files(monkeypatch, locked_file.resolve())
    cfg = config(tmp_path, sources=[{"directory": str(inbox)}])
    with caplog.at_level(logging.WARNING), Monitor(cfg, classifier=classifier()) as monitor:
        for _ in range(4):
            assert monitor.poll().stored == 0
        assert caplog.text.count("cannot be read (Permission denied); skipped, tried again each poll") == 1
        write_jsonl(locked_file, [doc(2, 1, "Globex revenue")], "a")  # a new version: warned again
        monitor.poll()
        monitor.poll()
        assert caplog.text.count("cannot be read (Permission denied)") == 2
        locked.clear()
        assert monitor.poll().stored == 2


def test_a_stray_year_1_document_does_not_make_a_new_monitors_baseline_complete(tmp_path: Path) -> None:
    """0001-01-01 ("unknown" in some feeds) lowered the stream's start to year 1: min_history no
    longer held, and a steady feed raised alerts within minutes, also after a restart (the
    warm-up started the stream at the oldest stored document)."""
    (tmp_path / "news.jsonl").write_text("", encoding="utf-8")
    steady = [
        doc(i, i / 2, "Acme Corp shares falls" if i % 3 else "Acme Corp revenue steady", topic="earnings")
        for i in range(120)
    ]
    alerts = []
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:
        monitor.ingest_batch([{"id": "old", "time": "0001-01-01T00:00:00Z", "text": "Archive item"}])
        for d in steady[:60]:
            alerts += monitor.ingest_batch([d]).alerts
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:  # a restart: the warm-up
        assert monitor.detector.first_bucket == monitor.detector.bucket_of(T0)
        for d in steady[60:]:
            alerts += monitor.ingest_batch([d]).alerts
    assert alerts == []


def test_a_report_under_a_file_is_refused_before_it_is_built(tmp_path: Path, monkeypatch) -> None:
    """--out FILE/x.html built the whole report, then failed "unexpected FileExistsError"."""
    import tunelab.apps.monitor.report as report_module

    with Monitor(config(tmp_path), classifier=classifier()) as monitor:
        monitor.ingest_batch([doc(1, 0, "Acme Corp falls")])
        (tmp_path / "afile").write_text("x", encoding="utf-8")

        def build(*args, **kwargs):
            raise AssertionError("built before --out was checked")

        monkeypatch.setattr(report_module, "build_report", build)
        with pytest.raises(ConfigError, match=r"--out .*afile/r\.html: .*afile is a file, not a folder"):
            report_module.write_report(monitor.store, "markets", tmp_path / "afile" / "r.html")


def test_a_restart_of_a_sparse_feed_older_than_the_ring_keeps_its_history_complete(tmp_path: Path) -> None:
    """The warm-up seeds the stream's start from the last stored document before the documents it
    replays (the feed ran before them: its history is complete, as in an unbroken run), not from
    the oldest stored one, which is more than a ring before them and would restart the history at
    the first replayed document."""
    (tmp_path / "news.jsonl").write_text("", encoding="utf-8")
    sparse = [doc(i, 90 * i, "Acme Corp revenue steady", topic="earnings") for i in range(7)]  # 9 hours
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:
        monitor.ingest_batch(sparse)
        unbroken = monitor.detector.first_bucket
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:
        detector = monitor.detector
        ring = detector.settings.ring_steps
        assert detector.now_bucket == detector.bucket_of(T0 + timedelta(minutes=540))
        assert unbroken is not None and detector.first_bucket <= detector.now_bucket - ring


def test_run_reads_the_other_sources_when_one_became_unreadable_since_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run() checked every source's readability each time it started, and a served follower calls
    it again after any failure: one file made unreadable since start-up (logrotate's create 0600)
    then stopped every source of the monitor."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    news = tmp_path / "news.jsonl"
    news.write_text("", encoding="utf-8")
    write_jsonl(inbox / "a.jsonl", [doc(1, 0, "Acme Corp revenue")])
    cfg = config(tmp_path, sources=[{"follow": str(news)}, {"directory": str(inbox)}])
    cfg.check_sources()  # start-up: both readable
    lock_files(monkeypatch, news)
    with Monitor(cfg, classifier=classifier()) as monitor:
        assert monitor.run(once=True).stored == 1
