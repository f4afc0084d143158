"""The monitor's windows and alerts (``tunelab.apps.monitor.detector``): pure, on synthetic streams.

Streams are Poisson arrivals with a fixed negative share, from a seeded generator, in event time:
no clock is involved, so every assertion is exact for its seed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tunelab.apps.monitor.detector import Detector, DetectorSettings, baseline_of, levels
from tunelab.errors import ConfigError

T0 = datetime(2026, 3, 2, tzinfo=UTC)
# Small windows keep the streams short: 10-minute windows, 2-hour baseline, alerts after 1 hour.
FAST = {"window_s": 600, "step_s": 60, "baseline_s": 7200, "min_history": 0.5, "min_volume": 4}


def stream(rate_per_min: float, share: float, minutes: float, *, seed: int, start: float = 0.0):
    """(minute, negative) arrivals of a Poisson stream."""
    rng = random.Random(seed)
    t, out = start, []
    while True:
        t += rng.expovariate(rate_per_min)
        if t >= start + minutes:
            return out
        out.append((t, rng.random() < share))


def feed(detector: Detector, events, key: str = "topic:earnings", prefix: str = "d"):
    """Observe ``events`` in time order; every alert change, in order."""
    changes = []
    for i, (minute, negative) in enumerate(sorted(events)):
        changes += detector.observe([key], T0 + timedelta(minutes=minute), negative, f"{prefix}{i}")
    return changes


def surge_events(seed: int = 1):
    """3 hours at 4 documents/min, 20% negative; from minute 150 to 180, 12 extra negatives a
    minute (the negative volume x16 and the share to ~80%), then calm again."""
    calm = stream(4, 0.2, 240, seed=seed)
    extra = [(m, True) for m, _ in stream(12, 1.0, 30, seed=seed + 1, start=150)]
    return calm, extra


def test_a_steady_stream_raises_no_alert() -> None:
    detector = Detector("m", DetectorSettings(**FAST))
    assert feed(detector, stream(4, 0.2, 24 * 60, seed=3)) == []
    stats = detector.window("topic:earnings")
    assert 20 <= stats.count <= 70 and stats.level is not None and stats.level < 4


def test_a_surge_opens_one_alert_with_its_documents_and_it_ends_after_the_surge() -> None:
    calm, extra = surge_events()
    detector = Detector("m", DetectorSettings(**FAST))
    events = sorted([(m, n, "c") for m, n in calm] + [(m, n, "s") for m, n in extra])
    changes = []
    for minute, negative, kind in events:
        doc = f"{kind}{minute:.4f}"
        changes += detector.observe(["topic:earnings"], T0 + timedelta(minutes=minute), negative, doc)
    assert len({a.id for a in changes}) == 1, changes  # one episode, one alert
    assert [a.ended_at is None for a in changes] == [True, False]  # opened, then ended
    alert, end = changes
    assert alert.key == "topic:earnings" and alert.monitor == "m"
    started = (alert.started_at - T0).total_seconds() / 60
    assert 150 < started < 155, started  # within 5 minutes of the surge's start
    assert alert.level >= 4 and alert.observed > alert.baseline
    assert len(alert.docs) >= 4 and any(d.startswith("s") for d in alert.docs)  # the surge's documents
    ended = (end.ended_at - T0).total_seconds() / 60
    assert 180 < ended < 200, ended  # ended once the surge was over
    assert end.started_at == alert.started_at and end.docs == alert.docs


def test_hysteresis_keeps_one_alert_while_the_level_hovers_and_rearms_after_it_falls() -> None:
    settings = DetectorSettings(**FAST)
    detector = Detector("m", settings)
    calm, _ = surge_events(seed=5)
    feed(detector, [e for e in calm if e[0] < 150])
    key, minute, n = "topic:earnings", 150.0, 0
    changes, hovered = [], 0

    def add(negative: bool) -> None:
        nonlocal n
        n += 1
        changes.extend(detector.observe([key], T0 + timedelta(minutes=minute), negative, f"h{n}"))

    def level() -> float:
        value = detector.window(key).level
        assert value is not None
        return value

    for _ in range(3):  # up over the threshold, then down between release and threshold: 3 times
        while level() < settings.threshold + 0.5:  # two negatives a minute
            minute += 1
            add(True)
            add(True)
        while level() >= settings.threshold - 0.5:  # none: they leave the window one minute at a time
            minute += 1
            add(False)
        assert settings.release < level() < settings.threshold
        hovered += 1
    assert hovered == 3 and len(changes) == 1 and changes[0].ended_at is None  # one alert
    while level() >= settings.release:  # falls back under release: the episode ends
        minute += 1
        add(False)
    assert len(changes) == 2 and changes[1].ended_at is not None and changes[1].id == changes[0].id
    minute += 30
    while level() < settings.threshold + 0.5:  # re-armed: the next surge is a new alert
        add(True)
    assert len(changes) == 3 and changes[2].ended_at is None and changes[2].id != changes[0].id


def test_the_same_stream_gives_the_same_alerts_whatever_the_wall_clock() -> None:
    calm, extra = surge_events(seed=11)
    runs = []
    for _ in range(2):
        detector = Detector("m", DetectorSettings(**FAST))
        runs.append([a.to_dict() for a in feed(detector, calm + extra)])
    assert runs[0] == runs[1] and runs[0]


def test_min_volume_and_the_warm_up_hold_alerts_back() -> None:
    calm, extra = surge_events(seed=13)
    strict = Detector("m", DetectorSettings(**{**FAST, "min_volume": 500}))
    assert feed(strict, calm + extra) == []
    # Surge in the first hour: the stream has not run min_history x baseline yet.
    early = Detector("m", DetectorSettings(**FAST))
    assert feed(early, [e for e in calm if e[0] < 60] + [(m - 120, n) for m, n in extra]) == []


def test_keys_are_windowed_separately_and_late_documents_are_counted_or_dropped() -> None:
    detector = Detector("m", DetectorSettings(**FAST))
    detector.observe(["topic:a", "company:acme", "company:acme"], T0, True, "x")
    detector.observe(["company:acme"], T0 + timedelta(minutes=1), False, "y")
    assert detector.window("company:acme").count == 2 and detector.window("company:acme").negative == 1
    assert detector.window("topic:a").count == 1
    assert detector.window("topic:none").count == 0
    detector.observe(["topic:a"], T0 + timedelta(hours=5), False, "z")
    detector.observe(["topic:a"], T0 + timedelta(minutes=2), True, "late")  # older than the ring
    assert detector.late == 1
    assert detector.window("topic:a").count == 1


def test_advance_ends_an_episode_of_a_key_that_went_quiet() -> None:
    calm, extra = surge_events(seed=17)
    detector = Detector("m", DetectorSettings(**FAST))
    feed(detector, [e for e in calm if e[0] < 150])
    opened = feed(detector, extra[:60], prefix="s")
    assert opened and opened[0].ended_at is None
    ended = detector.advance(T0 + timedelta(minutes=300))
    assert [a.id for a in ended] == [opened[0].id] and ended[0].ended_at == T0 + timedelta(minutes=300)


def test_resume_keeps_an_open_episode_open_across_a_restart() -> None:
    calm, extra = surge_events(seed=19)
    first = Detector("m", DetectorSettings(**FAST))
    feed(first, [e for e in calm if e[0] < 150])
    opened = feed(first, extra[:60], prefix="s")
    assert opened
    # A new detector warmed up quietly from the same documents, then told of the open episode.
    second = Detector("m", DetectorSettings(**FAST))
    for i, (m, n) in enumerate(sorted([e for e in calm if e[0] < 150] + extra[:60])):
        assert second.observe(["topic:earnings"], T0 + timedelta(minutes=m), n, f"d{i}", quiet=True) == []
    second.resume([opened[0]])
    more = feed(second, extra[60:120], prefix="t")
    assert all(a.id == opened[0].id for a in more)  # no second alert for the same episode


def test_a_transaction_that_raises_leaves_windows_and_episodes_as_they_were() -> None:
    calm, extra = surge_events(seed=17)
    before = [e for e in calm if e[0] < 150]
    done, undone = Detector("m", DetectorSettings(**FAST)), Detector("m", DetectorSettings(**FAST))
    feed(done, before)
    feed(undone, before)
    with pytest.raises(RuntimeError), undone.transaction():  # the store's commit failed
        assert feed(undone, extra[:60], prefix="s")  # an alert opened
        undone.observe(["company:new"], T0 + timedelta(minutes=400), True, "far")
        raise RuntimeError("commit failed")
    assert (undone.now_bucket, undone.late, sorted(undone._keys)) == (
        done.now_bucket,
        done.late,
        sorted(done._keys),
    )
    assert undone.window("topic:earnings") == done.window("topic:earnings")
    assert feed(undone, extra[:60], prefix="s") == feed(done, extra[:60], prefix="s") != []  # opens again


def test_scores_use_count_scales_so_rare_keys_are_not_alarmed_by_one_document() -> None:
    # A key that is never negative: MAD 0, yet one negative document is not an outlier.
    quiet = baseline_of(np.full(100, 3.0), np.zeros(100))
    share, volume = levels(3, 1, quiet)
    assert share is not None and share < 2.5 and volume < 1.5
    # 20 documents a window, 3-5 negative: 14 of 20 is a surge of the share (not yet of volume).
    base = baseline_of(np.full(99, 20.0), np.array([3.0, 4.0, 5.0] * 33))
    assert base.share_median == pytest.approx(0.2) and base.volume_median == 4
    share, volume = levels(20, 14, base)
    assert share > 4 and 2 < volume < 4
    share, volume = levels(60, 36, base)  # three times the documents, as negative: both
    assert share > 4 and volume > 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step_s": 7}, "detector.step: 7s must divide the window"),
        ({"baseline_s": 600}, "detector.baseline: 600s must be at least two windows"),
        ({"release": 5.0}, "detector.release: 5.0 must be below detector.threshold"),
        ({"threshold": "high"}, "detector.threshold: 'high' must be a number > 0"),
        ({"window_s": 0}, "detector.window: 0 must be a whole number >= 1"),
        ({"min_history": 2}, "detector.min_history: 2 must be between 0 and 1"),
    ],
)
def test_settings_are_checked_with_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DetectorSettings(**kwargs)
