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
# FAST is the robust z-score; CUSUM the same windows with the CUSUM (h 8: odds of e**8 to one).
FAST = {
    "window_s": 600,
    "step_s": 60,
    "baseline_s": 7200,
    "min_history": 0.5,
    "min_volume": 4,
    "method": "zscore",
}
CUSUM = {**FAST, "method": "cusum", "h": 8.0}


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


def test_a_late_negative_from_before_the_window_is_not_among_an_alerts_documents() -> None:
    """Late documents were appended after the window's newest and outlived its eviction, so an
    alert listed a negative dated 90 minutes before its 10-minute window (and kept it first)."""
    detector = Detector("m", DetectorSettings(**FAST))
    for minute in range(120):
        detector.observe(["topic:x"], T0 + timedelta(minutes=minute), False, f"calm{minute}")
    now = T0 + timedelta(minutes=120)
    detector.observe(["topic:x"], now - timedelta(seconds=30), True, "recent")
    detector.observe(["topic:x"], now - timedelta(minutes=90), True, "late-old")
    detector.observe(["topic:x"], now - timedelta(minutes=3), True, "late-recent")
    opened = []
    for k in range(10):
        opened += [a for a in detector.observe(["topic:x"], now + timedelta(seconds=k), True, f"s{k}")
                   if a.ended_at is None]  # fmt: skip
    assert len(opened) == 1, opened
    assert "late-old" not in opened[0].docs
    # in time order: the late document from inside the window is listed before the newer ones
    assert opened[0].docs[:2] == ["late-recent", "recent"], opened[0].docs


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
    # dated when its window cleared, not at the moment advance was given (test_monitor_review_fixes5)
    assert [a.id for a in ended] == [opened[0].id]
    assert opened[0].started_at < ended[0].ended_at < T0 + timedelta(minutes=300)


def test_a_key_silent_for_a_whole_ring_is_let_go_and_comes_back_as_new() -> None:
    """A feed naming new companies every day must not keep a ring per name for good."""
    detector = Detector("m", DetectorSettings(**FAST))  # ring: 2 x 10 + 120 - 1 = 139 one-minute steps
    detector.observe(["company:once"], T0, True, "a")
    detector.observe(["company:steady"], T0 + timedelta(minutes=130), False, "b")
    detector.advance(T0 + timedelta(minutes=138))
    assert detector.keys() == ["company:once", "company:steady"]  # still within its ring
    later = T0 + timedelta(minutes=139)
    detector.observe(["company:steady"], later, False, "c")
    detector.advance(later)
    assert detector.keys() == ["company:steady"]
    with pytest.raises(RuntimeError), detector.transaction():  # an undone batch puts it back
        detector.advance(later + timedelta(minutes=200))
        raise RuntimeError
    assert detector.keys() == ["company:steady"]
    detector.observe(["company:once"], later, False, "d")
    assert detector.window("company:once").count == 1 and detector.window("company:once").negative == 0


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
        ({"method": "zscore", "release": 5.0}, "detector.release: 5.0 must be below detector.threshold"),
        ({"threshold": "high"}, "detector.threshold: 'high' must be a number > 0"),
        ({"window_s": 0}, "detector.window: 0 must be a whole number >= 1"),
        ({"min_history": 2}, "detector.min_history: 2 must be between 0 and 1"),
        ({"method": "ewma"}, "detector.method: 'ewma' must be one of cusum, zscore"),
        ({"method": "cusum", "h": 0}, "detector.h: 0 must be a number > 0"),
        ({"method": "cusum", "shift": 1}, r"detector.shift: 1 must be a number > 1 \(the multiple"),
        (
            {"method": "cusum", "h": 6.0, "release": 6.0},
            r"detector.release: 6.0 must be below detector.h \(6.0\)",
        ),
        ({"method": "cusum", "release": -1}, "detector.release: -1 must be a number >= 0"),
        ({"method": "zscore", "release": 0}, "detector.release: 0 must be a number > 0"),
        ({"method": "cusum", "share": "yes"}, "detector.share: 'yes' must be true or false"),
        (
            {"step_s": 1, "window_s": 1800, "baseline_s": 3 * 86_400},
            r"detector.step: 1s keeps 262,799 steps .*the limit is 50,000.*use a longer step",
        ),
    ],
)
def test_settings_are_checked_with_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DetectorSettings(**kwargs)


# -- cusum -------------------------------------------------------------------------------------------


def three_x_surge(seed: int):
    """4 hours at 4 documents/min, 20% negative (0.8 negatives/min); from minute 150 to 165, 1.6
    extra negatives a minute: the negative rate 3x its baseline for 15 minutes."""
    calm = stream(4, 0.2, 240, seed=seed)
    extra = [(m, True) for m, _ in stream(1.6, 1.0, 15, seed=seed + 1, start=150)]
    return calm, extra


def test_cusum_is_the_recursion_run_over_the_window_with_a_floored_robust_baseline() -> None:
    from tunelab.apps.monitor.detector import cusum_levels, cusum_rate

    rng = np.random.default_rng(0)
    # A calm baseline of ~6 negatives a window, with an earlier surge (windows of 40): the rate
    # stays near the calm one (winsorised), where a plain mean would move to ~8.8.
    negatives = np.concatenate([rng.poisson(6.0, 190), np.full(10, 40.0)])
    base = baseline_of(negatives * 5.0, negatives)
    assert 5.5 < cusum_rate(base) < 6.6 and negatives.mean() > 7.5
    for _ in range(20):
        neg = rng.poisson(1.0, 10).astype(float)
        count = neg * 5
        s, lam = 0.0, cusum_rate(base) / 10
        for x in neg:  # the textbook recursion, from S = 0 at the window's start
            s = max(0.0, s + x * np.log(3.0) - 2.0 * lam)
        share, volume = cusum_levels(count, neg, base, 10, 3.0, False)
        assert share is None and volume == pytest.approx(s)
    # A key with no negatives in its baseline: the floor (half a negative a window) keeps a drift,
    # so S falls back, and one stray negative is ln 3 nats, nowhere near h.
    quiet = baseline_of(np.full(100, 3.0), np.zeros(100))
    assert cusum_rate(quiet) == 0.5
    _, one = cusum_levels(np.array([0.0] * 9 + [1.0]), np.array([0.0] * 9 + [1.0]), quiet, 10, 3.0, False)
    assert one == pytest.approx(np.log(3.0) - 2 * 0.05)
    _, gone = cusum_levels(np.array([1.0] + [0.0] * 9), np.array([1.0] + [0.0] * 9), quiet, 10, 3.0, False)
    assert gone == pytest.approx(np.log(3.0) - 2 * 0.05 * 10)


def test_the_defaults_are_the_cusum_chosen_on_dev_streams_and_the_zscore_keeps_its_own() -> None:
    d = DetectorSettings()
    assert (d.method, d.window_s, d.baseline_s, d.h, d.shift, d.share, d.release) == (
        "cusum", 1800, 3 * 86_400, 10.0, 3.0, False, 0.0
    )  # fmt: skip
    z = DetectorSettings(method="zscore")
    assert (z.window_s, z.baseline_s, z.threshold, z.release) == (900, 86_400, 4.0, 2.0)
    assert DetectorSettings(method="zscore", window_s=600).window_s == 600  # given: kept


def test_cusum_a_flat_poisson_stream_raises_no_alert_in_a_week() -> None:
    """A week of a flat stream (0.5 negatives a minute) through the default settings."""
    detector = Detector("m", DetectorSettings())
    events = stream(2, 0.25, 7 * 24 * 60, seed=23)
    highest, changes = 0.0, []
    for i, (minute, negative) in enumerate(events):
        changes += detector.observe(["topic:earnings"], T0 + timedelta(minutes=minute), negative, f"d{i}")
        if i % 7 == 0:
            level = detector.window("topic:earnings").volume_level
            highest = max(highest, level or 0.0)
    assert changes == []
    assert 2.0 < highest < detector.settings.h  # the statistic moved (not a dead detector), below h


def test_cusum_finds_a_planted_3x_surge_within_15_minutes_once_with_its_documents() -> None:
    for seed in (31, 37, 41):
        calm, extra = three_x_surge(seed)
        detector = Detector("m", DetectorSettings(**CUSUM))
        events = sorted([(m, n, "c") for m, n in calm] + [(m, n, "s") for m, n in extra])
        changes, level = [], None
        for minute, negative, kind in events:
            doc = f"{kind}{minute:.4f}"
            new = detector.observe(["topic:earnings"], T0 + timedelta(minutes=minute), negative, doc)
            if any(a.ended_at is None for a in new):
                level = detector.window("topic:earnings").volume_level  # S as the alert opened
            changes += new
        assert len({a.id for a in changes}) == 1, changes  # one episode, one alert
        alert = changes[0]
        started = (alert.started_at - T0).total_seconds() / 60
        assert 150 < started <= 165, (seed, started)
        assert alert.kind == "negative_volume" and alert.level >= 8 and alert.level == pytest.approx(level)
        assert 6 < alert.baseline < 10  # negatives a window: 0.8 a minute x 10
        assert alert.observed >= 4 and any(d.startswith("s") for d in alert.docs)
        assert [a.ended_at is None for a in changes] == [True, False]  # it ended after the surge
        assert (changes[1].ended_at - T0).total_seconds() / 60 < 200


def test_cusum_hysteresis_one_alert_while_s_hovers_and_rearms_once_it_is_back_to_zero() -> None:
    settings = DetectorSettings(**CUSUM)
    assert settings.release == 0.0  # the CUSUM's reset
    detector = Detector("m", settings)
    calm, _ = surge_events(seed=5)
    feed(detector, [e for e in calm if e[0] < 150])
    key, minute, n = "topic:earnings", 150.0, 0
    changes = []

    def add(negative: bool) -> None:
        nonlocal n
        n += 1
        changes.extend(detector.observe([key], T0 + timedelta(minutes=minute), negative, f"h{n}"))

    def level() -> float:
        value = detector.window(key).volume_level
        assert value is not None
        return value

    for _ in range(3):  # up over h, then down between 0 and h: 3 times
        while level() < settings.h + 1:
            minute += 1
            add(True)
            add(True)
            add(True)
        while level() >= settings.h - 1:
            minute += 0.25
            add(False)
        assert 0 < level() < settings.h
    assert len(changes) == 1 and changes[0].ended_at is None  # one alert
    while level() > 0:  # back to zero: the episode ends
        minute += 1
        add(False)
    assert len(changes) == 2 and changes[1].ended_at is not None and changes[1].id == changes[0].id
    minute += 30
    while len(changes) < 3:  # re-armed: the next surge is a new alert
        minute += 1
        add(True)
        add(True)
        add(True)
    assert changes[2].ended_at is None and changes[2].id != changes[0].id


def test_cusum_alerts_are_the_same_on_a_replay_min_volume_and_warm_up_hold_them_back() -> None:
    calm, extra = three_x_surge(seed=43)
    runs = [
        [a.to_dict() for a in feed(Detector("m", DetectorSettings(**CUSUM)), calm + extra)] for _ in range(2)
    ]
    assert runs[0] == runs[1] and runs[0]  # stable ids and levels
    assert feed(Detector("m", DetectorSettings(**{**CUSUM, "min_volume": 500})), calm + extra) == []
    early = Detector("m", DetectorSettings(**CUSUM))  # surge in the first hour: no baseline yet
    assert feed(early, [e for e in calm if e[0] < 60] + [(m - 120, n) for m, n in extra]) == []
    calm, big = surge_events(seed=13)
    quiet = Detector("m", DetectorSettings(**CUSUM))  # warming up: counts, never alerts
    for i, (m, n) in enumerate(sorted(calm[: len(calm) * 5 // 8] + big[:60])):
        assert quiet.observe(["topic:earnings"], T0 + timedelta(minutes=m), n, f"d{i}", quiet=True) == []
    level = quiet.window("topic:earnings").volume_level
    assert level is not None and level >= quiet.settings.h  # it would have alerted
    opened = quiet.observe(["topic:earnings"], T0 + timedelta(minutes=156), True, "after")
    assert [a.ended_at for a in opened] == [None]  # warm-up over: S over h opens the alert


def test_cusum_a_late_document_counts_as_if_it_had_come_in_time() -> None:
    calm, extra = three_x_surge(seed=47)
    events = sorted(calm + extra)
    in_order, late = Detector("m", DetectorSettings(**CUSUM)), Detector("m", DetectorSettings(**CUSUM))
    cut = [i for i, (m, _) in enumerate(events) if m < 158][-1]
    held = [i for i in range(cut - 30, cut) if events[i][1]][:4]  # 4 negatives from the last minutes
    feed_order = [i for i in range(cut + 1) if i not in held] + held
    for i in range(cut + 1):
        in_order.observe(["topic:earnings"], T0 + timedelta(minutes=events[i][0]), events[i][1], f"d{i}")
    for i in feed_order:
        late.observe(["topic:earnings"], T0 + timedelta(minutes=events[i][0]), events[i][1], f"d{i}")
    assert late.late == 0 and late.window("topic:earnings") == in_order.window("topic:earnings")
    assert in_order.window("topic:earnings").volume_level > 0


def test_cusum_advance_resume_and_an_undone_transaction() -> None:
    calm, extra = surge_events(seed=17)
    before = [e for e in calm if e[0] < 150]
    # advance: a key in its episode that gets no more documents ends once S is back to zero.
    first = Detector("m", DetectorSettings(**CUSUM))
    feed(first, before)
    opened = feed(first, extra[:60], prefix="s")
    assert opened and opened[0].ended_at is None
    ended = first.advance(T0 + timedelta(minutes=300))
    assert [a.id for a in ended] == [opened[0].id]
    # resume: a restarted detector warmed up quietly keeps the open episode (no second alert).
    again = Detector("m", DetectorSettings(**CUSUM))
    for i, (m, n) in enumerate(sorted(before + extra[:60])):
        again.observe(["topic:earnings"], T0 + timedelta(minutes=m), n, f"d{i}", quiet=True)
    again.resume([opened[0]])
    assert all(a.id == opened[0].id for a in feed(again, extra[60:120], prefix="t"))
    # transaction: an alert opened inside a block that raised is undone with the counts.
    done, undone = Detector("m", DetectorSettings(**CUSUM)), Detector("m", DetectorSettings(**CUSUM))
    feed(done, before)
    feed(undone, before)
    with pytest.raises(RuntimeError), undone.transaction():
        assert feed(undone, extra[:60], prefix="s")
        raise RuntimeError("commit failed")
    assert undone.window("topic:earnings") == done.window("topic:earnings")
    assert feed(undone, extra[:60], prefix="s") == feed(done, extra[:60], prefix="s") != []


def test_cusum_share_catches_a_surge_of_the_share_without_more_negatives() -> None:
    """From minute 150, 0.8 documents a minute, every one negative: as many negatives as before
    (0.8 a minute), the share from 20% to 100%. The volume CUSUM sees nothing; the share's does."""
    calm = [e for e in stream(4, 0.2, 150, seed=53)]
    shifted = [(m, True) for m, _ in stream(0.8, 1.0, 30, seed=54, start=150)]
    base = {**CUSUM, "h": 5.0}
    assert feed(Detector("m", DetectorSettings(**base)), calm + shifted) == []
    changes = feed(Detector("m", DetectorSettings(**{**base, "share": True})), calm + shifted)
    assert changes and changes[0].kind == "negative_share"
    assert changes[0].baseline == pytest.approx(0.2, abs=0.05) and changes[0].observed > 0.8
    assert changes[0].started_at < T0 + timedelta(minutes=165)


def test_the_config_detector_section_takes_the_method_and_refuses_the_other_methods_fields() -> None:
    from tunelab.apps.monitor.config import MonitorConfig

    base = {"name": "m", "runs": {"sentiment": "runs/x"}}
    assert MonitorConfig.from_dict(base).detector.method == "cusum"  # the default
    raw = {"method": "cusum", "h": 9, "shift": 2.5, "share": True, "window": "20m", "step": "2m"}
    d = MonitorConfig.from_dict({**base, "detector": raw}).detector
    assert (d.method, d.h, d.shift, d.share, d.window_s, d.step_s, d.release) == (
        "cusum",
        9,
        2.5,
        True,
        1200,
        120,
        0,
    )
    z = MonitorConfig.from_dict({**base, "detector": {"method": "zscore", "threshold": 3.5}}).detector
    assert (z.method, z.threshold, z.release) == ("zscore", 3.5, 2.0)
    # A section written before the CUSUM (a threshold, no method) keeps meaning the z-score.
    old = MonitorConfig.from_dict({**base, "detector": {"threshold": 4, "release": 1.5}}).detector
    assert (old.method, old.threshold, old.release) == ("zscore", 4, 1.5)
    for detector, message in [
        (
            {"method": "cusum", "threshold": 4},
            "detector.threshold: only for method zscore; with method cusum the alert opens at detector.h",
        ),
        (
            {"method": "zscore", "h": 9},
            "detector.h: only for method cusum; with method zscore the alert opens at detector.threshold",
        ),
        ({"share": True, "method": "zscore"}, "detector.share: only for method cusum"),
        ({"threshold": 4, "h": 9}, "detector.threshold: only for method zscore; with method cusum"),
        ({"shift": 0.5}, "detector.shift: 0.5 must be a number > 1"),
        ({"method": "median"}, "detector.method: 'median' must be one of cusum, zscore"),
        ({"hh": 1}, "detector: unknown field hh .known: window, step, baseline, method, h, shift, share"),
    ]:
        with pytest.raises(ConfigError, match=message) as info:
            MonitorConfig.from_dict({**base, "detector": detector})
        assert "\n" not in str(info.value)


def test_an_episode_reopened_at_the_same_timestamp_gets_its_own_id() -> None:
    """A feed stamped to the minute ends an episode and opens the next at the same time: the second
    must not take the first one's id (the store would keep one row, marked delivered)."""
    s = DetectorSettings(
        method="zscore", window_s=600, step_s=60, baseline_s=7200, min_history=0.5, min_volume=4
    )
    d = Detector("markets", s)
    n = 0

    def feed(moment: datetime, negative: bool) -> list:
        nonlocal n
        n += 1
        return d.observe(["company:acme"], moment, negative, f"d{n}")

    for minute in range(180):  # calm: 5 or 30 a minute in 20-minute blocks, one in five negative
        per = 30 if (minute // 20) % 2 else 5
        for i in range(per):
            feed(T0 + timedelta(minutes=minute, seconds=i * 60 / per), i % 5 == 0)
    t = T0 + timedelta(minutes=180)
    opened, ended = [], []
    for negative in (True, False, True):
        for _ in range(400):
            out = feed(t, negative)
            if out:
                (opened if out[0].ended_at is None else ended).append(out[0])
                break
    assert len(opened) == 2 and len(ended) == 1
    assert opened[0].started_at == opened[1].started_at and opened[0].id != opened[1].id


@pytest.mark.parametrize("settings", [CUSUM, FAST], ids=["cusum", "zscore"])
def test_a_batch_alerts_as_the_same_documents_sent_one_at_a_time(settings: dict) -> None:
    """An episode of a key without documents was judged only by ``advance`` after a batch: in one
    batch it stayed open through the calm between two surges, and the second surge opened no alert."""
    docs = [(T0 + timedelta(minutes=m), ["topic:calm"], False, f"c{m}") for m in range(6 * 60)]
    for surge, start in ((1, 180), (2, 300)):
        docs += [
            (T0 + timedelta(minutes=start, seconds=j), ["company:acme"], True, f"s{surge}-{j}")
            for j in range(12)
        ]
    docs.sort(key=lambda d: (d[0], d[3]))

    def alerts(batch: int) -> list[tuple[str, str, str | None]]:
        detector, out = Detector("m", DetectorSettings(**settings)), []
        for i in range(0, len(docs), batch):
            part = docs[i : i + batch]
            with detector.transaction():
                for moment, keys, negative, doc_id in part:
                    out += detector.observe(keys, moment, negative, doc_id)
                out += detector.advance(part[-1][0])
        return [(a.key, f"{a.started_at:%H:%M}", a.ended_at and f"{a.ended_at:%H:%M}") for a in out]

    one_at_a_time = alerts(1)
    assert [(key, start) for key, start, end in one_at_a_time if end is None] == [
        ("company:acme", "03:00"),
        ("company:acme", "05:00"),
    ]
    assert alerts(len(docs)) == one_at_a_time == alerts(100)


@pytest.mark.parametrize("where", ["first", "amid the stream"])
def test_a_document_too_old_to_count_does_not_make_the_history_complete(where: str) -> None:
    """One document dated 0001-01-01 (some feeds' "unknown") moved the stream's start to year 1:
    min_history held nothing back, and a surge in the first hour alerted (as if a baseline of
    zeros were complete)."""
    calm, extra = surge_events(seed=13)
    events = sorted([e for e in calm if e[0] < 60] + [(m - 120, n) for m, n in extra])
    detector = Detector("m", DetectorSettings(**FAST))
    stray = lambda: detector.observe(["topic:earnings"], datetime(1, 1, 1, tzinfo=UTC), True, "stray")  # noqa: E731
    if where == "first":
        assert stray() == []
    changes = feed(detector, events[:20])
    if where != "first":
        assert stray() == []
    changes += feed(detector, events[20:], prefix="e")
    assert changes == []
    assert detector.first_bucket == detector.bucket_of(T0 + timedelta(minutes=events[0][0]))


def test_time_jumping_past_a_whole_ring_restarts_the_history() -> None:
    """After a silence longer than the ring nothing is left of the baseline: the stream counts as
    new (min_history holds again) instead of a complete baseline of zeros that any level beats."""
    calm, extra = surge_events(seed=13)
    detector = Detector("m", DetectorSettings(**FAST))  # ring: 139 one-minute steps
    assert feed(detector, [e for e in calm if e[0] < 30]) == []
    later = 400  # minutes: far past the ring
    restart = sorted([(m + later, n) for m, n in calm if m < 60] + [(m - 120 + later, n) for m, n in extra])
    assert feed(detector, restart, prefix="r") == []
    assert detector.first_bucket == detector.bucket_of(T0 + timedelta(minutes=restart[0][0]))
