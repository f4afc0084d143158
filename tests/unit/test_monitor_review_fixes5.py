"""Review of the monitor detector's history, baseline and episode ends:

- one document dated before the feed began (an old article republished) moved the history's start
  back: the days before the monitor existed counted as a complete, silent history, warm-up was
  skipped and every busy key alerted at once (also after a restart, which replayed it first);
- a business-hours feed alerted on each busy key every weekday morning: the nights and weekends
  were zero windows in its baseline (a third of its rate, and a median of 0 cut the rest to 4);
- an episode ended at the next document after a feed-wide silence (09:00 the next day), not when
  its window cleared (17:05);
- ``benchmarks/monitor_detector_dev.py`` read a key's level only at its own documents, so it kept
  episodes open that the detector ended on other keys' documents, and missed the alerts after.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import tunelab
from tunelab.apps.monitor import Classifier, Monitor, MonitorConfig, open_monitor_store
from tunelab.apps.monitor.detector import Alert, Detector, DetectorSettings

# The benchmarks beside the tunelab imported (a check against another source tree runs its own).
_SOURCE_BENCH = Path(tunelab.__file__).resolve().parents[2] / "benchmarks"
BENCH = _SOURCE_BENCH if _SOURCE_BENCH.is_dir() else Path(__file__).resolve().parents[2] / "benchmarks"
MONDAY = datetime(2025, 6, 2, tzinfo=UTC)
SMALL = {"window": "10m", "baseline": "2h"}  # a ring of 139 one-minute steps, 30 minutes of warm-up


class Sentiment:
    """Negative when the text says "falls"."""

    labels = SimpleNamespace(names=["negative", "neutral", "positive"])
    task_name = "single_label"

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict[str, Any]]:
        return [{"label": "negative" if "falls" in t else "positive", "score": 0.9} for t in texts]


def steady_feed(hours: float, seed: int = 0) -> list[tuple[datetime, str, bool]]:
    """Five companies at 3 documents a minute each, 15% negative, from MONDAY on: no surge."""
    rng, out, t = random.Random(seed), [], 0.0
    while True:
        t += rng.expovariate(15 / 60)
        if t >= hours * 3600:
            return out
        out.append((MONDAY + timedelta(seconds=t), f"c{rng.randrange(5)}", rng.random() < 0.15))


def opened(alerts: list[Alert]) -> list[tuple[str, datetime]]:
    return [(a.key, a.started_at) for a in alerts if a.ended_at is None]


# -- 1. the history starts at the feed's first present ---------------------------------------------


def test_one_old_article_does_not_make_the_time_before_the_feed_a_complete_history() -> None:
    """Without the old article nothing alerts; with it (dated 90 minutes before the feed's first
    document, inside the ring) busy companies alerted within minutes over the floor's baseline (two
    of the five here, all five in the review's 6-hour feed at the default settings)."""

    def run(with_old: bool) -> list[tuple[str, datetime]]:
        detector = Detector("m", DetectorSettings(window_s=600, baseline_s=7200))
        alerts: list[Alert] = []
        for n, (moment, company, negative) in enumerate(steady_feed(2)):
            alerts += detector.observe([f"company:{company}"], moment, negative, f"d{n}")
            if with_old and n == 100:
                alerts += detector.observe(["company:c0"], MONDAY - timedelta(minutes=90), False, "old")
        assert detector.first_bucket == detector.bucket_of(MONDAY)  # not the old article's
        return opened(alerts)

    assert run(with_old=False) == []
    assert run(with_old=True) == []


def config(**raw: Any) -> MonitorConfig:
    base = {"name": "markets", "store": "unused", "sources": [], "runs": {"sentiment": "unused"}}
    return MonitorConfig.from_dict({**base, "detector": SMALL, **raw})


def batches(feed: list[tuple[datetime, str, bool]], start: int, size: int = 50) -> list[list[dict]]:
    docs = [
        {"id": f"d{start + i}", "time": t.isoformat(), "text": "Acme falls" if neg else "Acme ok", "topic": c}
        for i, (t, c, neg) in enumerate(feed)
    ]
    return [docs[i : i + size] for i in range(0, len(docs), size)]


def test_a_restart_starts_the_history_at_the_monitors_first_document(monitor_store: Any) -> None:
    """The old article stored among the documents a restart replays came first in the replay and
    was taken as the stream's start again: the monitor's first document time is stored and the
    warm-up's history starts no earlier."""
    feed = steady_feed(2)
    old = {"id": "old", "time": (MONDAY - timedelta(minutes=90)).isoformat(), "text": "Acme falls"}
    alerts = []
    with Monitor(config(), store=monitor_store, classifier=Classifier(Sentiment())) as monitor:
        for batch in batches(feed[:100], 0):
            alerts += monitor.ingest_batch(batch).alerts
        alerts += monitor.ingest_batch([old]).alerts
    with Monitor(config(), store=monitor_store, classifier=Classifier(Sentiment())) as monitor:
        for batch in batches(feed[100:], 100):
            alerts += monitor.ingest_batch(batch).alerts
    assert alerts == []
    assert monitor_store.began("markets") == feed[0][0]


def test_a_store_from_before_the_first_document_time_was_kept_gets_its_oldest(monitor_store: Any) -> None:
    """An existing database keeps working: the column is added, and set to the oldest stored
    document (where a restart's history started before), not to the next batch's time, which
    would hold alerts back for another warm-up."""
    with Monitor(config(), store=monitor_store, classifier=Classifier(Sentiment())) as monitor:
        monitor.ingest_batch(batches(steady_feed(0.2), 0)[0])
    with monitor_store._transaction() as conn:  # as a release before the column left it
        monitor_store._exec(conn, "ALTER TABLE tunelab_monitors DROP COLUMN began_at")
    with open_monitor_store(getattr(monitor_store, "url", None) or monitor_store.path) as again:
        assert again.began("markets") == steady_feed(0.2)[0][0]


# -- 2. the baseline counts the windows in which the feed had documents ----------------------------


def business_hours(days: list[int], surge_day: int | None = None) -> list[tuple[datetime, bool]]:
    """One company at 2 documents a minute, 15% negative, 09:00-17:00 UTC on ``days`` (0: Monday);
    on ``surge_day`` 24 negatives more from 11:00 to 11:20: 5x its negative rate."""
    rng, docs = random.Random(0), []
    for day in days:
        t = 9 * 3600.0
        while (t := t + rng.expovariate(2 / 60)) < 17 * 3600:
            docs.append((MONDAY + timedelta(days=day, seconds=t), rng.random() < 0.15))
    if surge_day is not None:
        surge = MONDAY + timedelta(days=surge_day, hours=11)
        docs += [(surge + timedelta(seconds=50 * i), True) for i in range(24)]
    return sorted(docs)


@pytest.mark.parametrize("method", ["cusum", "zscore"])
def test_a_business_hours_feed_alerts_on_a_surge_and_not_every_morning(method: str) -> None:
    """A week, Monday to the next Monday, with the method's default settings: no alert (the CUSUM
    alerted on Tuesday at 09:54 over a baseline of 1.35 negatives a window, 12 observed, and each
    weekday after; the z-score 9 times, over a median of 0); a 5x surge on Friday is found within
    its 20 minutes. (The weekend is longer than the z-score's ring: its history starts again on
    Monday, as for any feed silent that long.)"""
    week = [0, 1, 2, 3, 4, 7]

    def run(surge_day: int | None) -> list[tuple[str, datetime]]:
        detector = Detector("m", DetectorSettings(method=method))
        alerts: list[Alert] = []
        for n, (moment, negative) in enumerate(business_hours(week, surge_day)):
            alerts += detector.observe(["company:acme"], moment, negative, f"d{n}")
        return opened(alerts)

    assert run(None) == []
    surge = MONDAY + timedelta(days=4, hours=11)
    [(key, started)] = run(4)
    assert key == "company:acme" and surge <= started <= surge + timedelta(minutes=20)


# -- 3. an episode ends when its window clears, not at the next document ---------------------------


def evening_surge() -> tuple[Detector, list[tuple[str, str, datetime]]]:
    """A feed from 09:00 to 17:00 on one topic, 20 negatives on acme from 16:50, nothing after."""
    rng = random.Random(1)
    detector = Detector("m", DetectorSettings(window_s=600, baseline_s=4 * 3600))
    events: list[tuple[str, str, datetime]] = []

    def observe(key: str, seconds: float, negative: bool) -> None:
        for a in detector.observe([key], MONDAY + timedelta(seconds=seconds), negative, f"d{len(events)}"):
            events.append(("opened" if a.ended_at is None else "ended", a.key, a.ended_at or a.started_at))

    t = 9 * 3600.0
    while t < 17 * 3600:
        t += rng.expovariate(2 / 60)
        observe("topic:markets", t, rng.random() < 0.1)
    for i in range(20):
        observe("company:acme", 16 * 3600 + 50 * 60 + i * 15, True)
    return detector, events


def test_an_episode_ends_when_its_window_clears_not_at_the_next_mornings_document() -> None:
    """The acme episode ended at 09:00 the next day, with the feed's next document; its window held
    none of its documents from 17:05 on."""
    detector, events = evening_surge()
    assert [(e, key) for e, key, _ in events] == [("opened", "company:acme")]
    next_morning = MONDAY + timedelta(days=1, hours=9)
    for i in range(5):
        for a in detector.observe(["topic:markets"], next_morning + timedelta(minutes=i), False, f"m{i}"):
            events.append(("ended", a.key, a.ended_at))
    (_, _, started), (what, key, ended) = events
    assert (what, key) == ("ended", "company:acme")
    assert started < ended <= MONDAY + timedelta(hours=17, minutes=5)


def test_advance_dates_an_episodes_end_when_its_window_cleared() -> None:
    """``advance`` to a later time (no document) ends it there too, not at the time given."""
    detector, events = evening_surge()
    [ended] = detector.advance(MONDAY + timedelta(hours=20))
    assert events[0][2] < ended.ended_at <= MONDAY + timedelta(hours=17, minutes=5)


# -- 4. the dev script's offline episodes are the detector's ---------------------------------------


def _load(stem: str) -> Any:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the dev script imports monitor_stream from beside it
    spec = importlib.util.spec_from_file_location(f"{stem}_review_fixes5", BENCH / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_the_dev_scripts_episodes_are_the_detectors() -> None:
    """A key whose surge ended while only another key had documents: the detector ended it then and
    alerted on its second surge; the script, reading the key at its own documents only, saw the
    level still up at its next one and had the second surge inside the first episode."""
    dev = _load("monitor_detector_dev")
    bench = dev.bench  # monitor_stream, as the script imports it
    t0 = bench.START.timestamp()
    rows = [(t0 + 30 * i + 0.5, "topic:other", False) for i in range(8 * 120)]  # moves time on
    rows += [(t0 + h * 3600 + 7, "company:k", True) for h in range(8)]  # one negative an hour
    for start in (5 * 3600, 5 * 3600 + 50 * 60):  # two surges of 15 negatives in 5 minutes
        rows += [(t0 + start + 20 * i + 3, "company:k", True) for i in range(15)]
    rows.append((t0 + 5 * 3600 + 45 * 60, "company:k", True))
    rows.sort()
    docs = [bench.StreamDoc(f"d{i}", t, 0, (key,), None) for i, (t, key, _) in enumerate(rows)]
    negative = [neg for _, _, neg in rows]
    stream = bench.Stream(docs, [], t0, t0 + 8 * 3600, {}, {}, [])
    base = {"method": "cusum", "window_s": 1800, "baseline_s": 4 * 3600, "release": 0.0, "min_volume": 5}
    detector = Detector("m", DetectorSettings(h=10, **base))
    alerts: list[Alert] = []
    for doc, neg in zip(docs, negative, strict=True):
        alerts += detector.observe(doc.keys, datetime.fromtimestamp(doc.time, UTC), neg, doc.id)
    real = [(key, at.timestamp()) for key, at in opened(alerts)]
    levels = dev.levels_of(stream, negative, DetectorSettings(h=1e9, **base))
    offline = dev.episodes(levels, 10, share=False, release=0.0, min_volume=5)
    assert [key for key, _ in real] == ["company:k", "company:k"]  # both surges
    assert offline == real
