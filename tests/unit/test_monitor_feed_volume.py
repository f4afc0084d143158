"""The CUSUM's expected negatives follow how busy the whole feed is now.

A key's baseline rate was its mean over the 3-day baseline, so the busy part of a feed with a daily
cycle looked like a surge on every busy key (13.74 false alerts a simulated week on the benchmark's
seed-0 stream with a +-50% daily cycle, 0.53 on the flat one). The CUSUM now expects the key's
baseline negatives per document of the rest of the feed, times the rest of the feed's documents in
the current window (``detector.feed_ratio``, within ``FEED_RATIO``).

The helpers' names new with it are imported inside the test that needs them, so that against the
source before it the other tests fail on what they check, not on an import.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from test_monitor_review_fixes5 import MONDAY, Sentiment, batches, config, opened

from tunelab.apps.monitor import Classifier, Monitor, open_monitor_store
from tunelab.apps.monitor.detector import Alert, Detector, DetectorSettings

COMPANIES = ("c0", "c1", "c2", "c3")
SURGE = MONDAY + timedelta(days=2, hours=14)  # Wednesday 14:00, the busy part of the day


def factor(seconds: float) -> float:
    """The feed's volume against its daily mean: twice it 09:00-17:00 UTC, half at night (the mean of
    the day is 1: 8 h x 2 + 16 h x 0.5 = 24 h)."""
    return 2.0 if 9 <= (seconds % 86_400) / 3600 < 17 else 0.5


def cycling_feed(
    days: float, surge: bool, seed: int = 0, rate: float = 0.75
) -> list[tuple[datetime, str, bool]]:
    """Four companies at ``rate`` documents a minute each on average (twice that 09:00-17:00, half at
    night), every one 20% negative whatever the hour; with ``surge``, 24 more negatives on c1 from
    SURGE over 20 minutes: 5x its negative rate then (0.3 a minute)."""
    rng, out = random.Random(seed), []
    peak = 4 * rate * 2.0 / 60  # documents a second at the busy rate; thinned to the hour's rate
    t = 0.0
    while (t := t + rng.expovariate(peak)) < days * 86_400:
        if rng.random() < factor(t) / 2.0:
            out.append((MONDAY + timedelta(seconds=t), rng.choice(COMPANIES), rng.random() < 0.2))
    if surge:
        out += [(SURGE + timedelta(seconds=50 * i + 3), "c1", True) for i in range(24)]
    return sorted(out)


def replay(feed: list[tuple[datetime, str, bool]]) -> list[Alert]:
    """The alerts opened on ``feed`` by a detector with the default settings (CUSUM, 30m, 3d, h 10)."""
    detector = Detector("markets", DetectorSettings())
    alerts: list[Alert] = []
    for n, (moment, company, negative) in enumerate(feed):
        alerts += detector.observe([f"topic:{company}"], moment, negative, f"d{n}")
    return [a for a in alerts if a.ended_at is None]


def detect(feed: list[tuple[datetime, str, bool]]) -> list[tuple[str, datetime]]:
    return opened(replay(feed))


def test_a_feed_whose_volume_cycles_over_the_day_raises_no_alert() -> None:
    """Three simulated days, every company's negative share constant: no alert. With the key's mean
    rate over the baseline expected all day, the busy hours looked like a surge: 6 to 9 alerts on
    the four companies, Tuesday and Wednesday 09:00-17:00 (seeds 0-5)."""
    assert detect(cycling_feed(3, surge=False)) == []


def test_a_real_surge_in_the_busy_hours_is_still_found() -> None:
    """5x one company's negatives for 20 minutes, in the busy part of the day: one alert, on it,
    within the surge; nothing else. Its baseline, the negatives a window it expected, is the busy
    hours' (0.3 a minute, 9 a window), not the day's mean (4.5): this feed's rest, ~70 documents a
    window, keeps about 70% of its swing (FEED_SHRINK_DOCS), so about 7."""
    [alert] = replay(cycling_feed(3, surge=True))
    assert alert.key == "topic:c1"
    assert SURGE <= alert.started_at <= SURGE + timedelta(minutes=20)
    assert 6.5 <= alert.baseline <= 10.5


def test_the_expected_negatives_scale_with_the_rest_of_the_feed_within_bounds() -> None:
    """The ratio itself: the rest of the feed's documents now over its baseline mean, the key's own
    left out, pulled towards 1 by mean / (mean + FEED_SHRINK_DOCS); 1 when the rest of the feed is
    thinner than min_volume a window; within FEED_RATIO."""
    from tunelab.apps.monitor.detector import (
        FEED_RATIO,
        FEED_SHRINK_DOCS,
        baseline_of,
        cusum_rate,
        feed_ratio,
    )

    ones = np.ones(10)
    base = baseline_of(ones * 20, ones * 4, 100.0)
    keep = 100.0 / (100.0 + FEED_SHRINK_DOCS)  # the share of the swing a rest of 100 a window keeps
    assert base.feed_rate == 100.0
    assert feed_ratio(150, base, 5) == pytest.approx(1 + 0.5 * keep)  # above the mean: as counted
    assert feed_ratio(81, base, 5) == pytest.approx(1 - 0.1 * keep)  # below: one sd high (81 + 9)
    assert feed_ratio(95, base, 5) == 1.0  # within one standard deviation under the mean: the mean
    assert cusum_rate(base, feed_ratio(150, base, 5)) == pytest.approx(4.0 * (1 + 0.5 * keep))
    assert feed_ratio(0, base, 5) == FEED_RATIO[0]
    assert feed_ratio(10_000, base, 5) == FEED_RATIO[1] == 2.0  # a flood of one source: at most twice
    thin = baseline_of(ones * 20, ones * 4, 6.0)  # a rest of 6 documents a window beside a big key
    assert feed_ratio(0, thin, 5) == pytest.approx(1 - 6.0 / (6.0 + FEED_SHRINK_DOCS))  # not 0.5
    for thin in (0.0, 4.9):  # a feed of this key alone; a rest of the feed too thin to compare
        assert feed_ratio(0, baseline_of(ones * 20, ones * 4, thin), 5) == 1.0
        assert feed_ratio(50, baseline_of(ones * 20, ones * 4, thin), 5) == 1.0


def ingest(monitor: Monitor, docs: list[list[dict]]) -> list[Alert]:
    alerts: list[Alert] = []
    for batch in docs:
        alerts += monitor.ingest_batch(batch).alerts
    return alerts


def test_a_restart_in_the_busy_hours_gives_the_same_alerts(monitor_store: Any, tmp_path: Any) -> None:
    """The feed's ring is rebuilt from the store with the keys' rings: a monitor restarted on
    Wednesday at 13:00 alerts as one that ran through: on the surge alone."""
    feed = cycling_feed(2.75, surge=True)
    cut = next(i for i, (t, _, _) in enumerate(feed) if t >= SURGE - timedelta(hours=1))
    settings = {"detector": {}}  # the defaults
    classifier = Classifier(Sentiment())
    with Monitor(config(**settings), store=monitor_store, classifier=classifier) as monitor:
        restarted = ingest(monitor, batches(feed[:cut], 0, size=500))
    with Monitor(config(**settings), store=monitor_store, classifier=classifier) as monitor:
        restarted += ingest(monitor, batches(feed[cut:], cut, size=500))
    with open_monitor_store(str(tmp_path / "through.db")) as store:
        store.register_monitor("markets")
        with Monitor(config(**settings), store=store, classifier=classifier) as monitor:
            through = ingest(monitor, batches(feed, 0, size=500))
    assert [(a.key, a.started_at, a.id) for a in restarted if a.ended_at is None] == [
        (a.key, a.started_at, a.id) for a in through if a.ended_at is None
    ]
    [(key, started)] = opened(through)
    assert key == "topic:c1" and SURGE <= started <= SURGE + timedelta(minutes=20)


def test_a_key_that_is_most_of_the_feed_raises_no_alert_on_a_flat_feed() -> None:
    """Beside a thin rest of the feed (6 documents a window), that rest's chance lows halved the big
    key's expectation: 5 false alerts in 7 flat days. The ratio of a thin rest is pulled towards 1."""
    rng = random.Random(0)
    events = []
    for rate, key in ((1.5, "topic:A"), (0.2, None)):  # documents a minute; 20% negative everywhere
        t = 0.0
        while (t := t + rng.expovariate(rate / 60)) < 7 * 86400:
            events.append((t, key or f"topic:o{rng.randrange(4)}", rng.random() < 0.2))
    events.sort()
    detector = Detector("m", DetectorSettings())
    start = datetime(2026, 1, 5, tzinfo=UTC)
    alerts = []
    for i, (t, key, negative) in enumerate(events):
        alerts += detector.observe([key], start + timedelta(seconds=t), negative, f"d{i}")
    assert len(events) > 15_000 and alerts == []
