"""The monitor's third review: one document dated ahead of the stream no longer moves the
detector's present (a surge at the real time alerted late or never), max_future is 5 minutes and
under half the window, a trend without ``from`` over a stray 1970 document is cut rather than a
422, ``1M`` is no longer one minute, and a URL's unencoded '+' is named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tunelab.apps.monitor import Classifier, Monitor, MonitorConfig, parse_document, parse_time, trend
from tunelab.apps.monitor.config import parse_duration
from tunelab.apps.monitor.detector import Detector, DetectorSettings
from tunelab.apps.monitor.trend import MAX_BUCKETS
from tunelab.errors import ConfigError, DataError

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
DETECTOR = {"window": "10m", "step": "1m", "baseline": "2h", "min_history": 0.5, "min_volume": 4}


class FakeSentiment:
    """Negative when the text says "falls"."""

    labels = SimpleNamespace(names=["negative", "neutral", "positive"])
    task_name = "single_label"

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict[str, Any]]:
        return [{"label": "negative" if "falls" in t else "positive", "score": 0.9} for t in texts]


def config(tmp_path: Path, **raw: Any) -> MonitorConfig:
    base = {
        "name": "markets",
        "store": str(tmp_path / "monitor.db"),
        "sources": [],
        "runs": {"sentiment": "runs/unused"},
        "detector": DETECTOR,
    }
    return MonitorConfig.from_dict({**base, **raw})


def doc(i: int, minute: float, text: str) -> dict[str, Any]:
    return {
        "id": f"n{i}",
        "time": (T0 + timedelta(minutes=minute)).isoformat(),
        "text": text,
        "topic": "earnings",
    }


def calm_and_surge() -> list[dict[str, Any]]:
    """3 hours of one item every 30 s, one in five negative; four extra negatives a minute from
    minute 150 to 165 (test_monitor_app's stream)."""
    docs = [doc(i, i / 2, "shares falls" if i % 5 == 0 else "revenue steady") for i in range(360)]
    docs += [doc(1000 + j, 150 + j / 4, "lawsuit: shares falls") for j in range(60)]
    return sorted(docs, key=lambda d: d["time"])


def opened(tmp_path: Path, docs: list[dict[str, Any]], batch: int) -> list[tuple[str, datetime]]:
    tmp_path.mkdir(exist_ok=True)
    with Monitor(config(tmp_path), classifier=Classifier(FakeSentiment())) as monitor:
        return [
            (a.key, a.started_at)
            for i in range(0, len(docs), batch)
            for a in monitor.ingest_batch(docs[i : i + batch]).alerts
        ]


# -- 1. one document ahead of the stream ------------------------------------------------------------


@pytest.mark.parametrize(("ahead", "batch"), [(50, 1), (50, 10), (20, 10), (20, 64)])
def test_one_document_dated_ahead_of_the_stream_neither_hides_the_surge_nor_delays_its_alert(
    tmp_path: Path, ahead: int, batch: int
) -> None:
    """It moved every key's window ahead: 50 minutes ahead, no alert at all; 20, one 12 minutes late."""
    clean = opened(tmp_path / "clean", calm_and_surge(), batch)
    assert [key for key, _ in clean] == ["topic:earnings"]
    docs = calm_and_surge()
    at = next(i for i, d in enumerate(docs) if d["time"] >= (T0 + timedelta(minutes=140)).isoformat())
    docs.insert(at, doc(9999, 140 + ahead, "revenue steady"))  # a feed with a wrong clock
    assert opened(tmp_path / "stray", docs, batch) == clean  # same key, same started_at


def test_a_stream_resuming_after_a_silence_moves_the_present_on_and_loses_no_document() -> None:
    settings = DetectorSettings(method="zscore", window_s=600, baseline_s=7200, min_history=0.5)
    detector = Detector("m", settings)
    for minute in range(30):
        detector.observe(["topic:x"], T0 + timedelta(minutes=minute), False, f"a{minute}")
    stray = T0 + timedelta(minutes=80)
    detector.observe(["topic:x"], stray, True, "stray")  # held: the present stays
    assert detector.newest == T0 + timedelta(minutes=29)
    detector.observe(["topic:x"], T0 + timedelta(minutes=30), False, "a30")  # refutes it
    assert detector.newest == T0 + timedelta(minutes=30) and detector.window("topic:x").count == 10
    with pytest.raises(RuntimeError), detector.transaction():  # an undone batch puts the hold back
        detector.observe(["topic:x"], T0 + timedelta(minutes=90), False, "b0")
        detector.observe(["topic:x"], T0 + timedelta(minutes=90, seconds=30), False, "b1")
        # the next one confirms it: the stream moved on (the stray, now behind, counts too)
        assert detector.newest == T0 + timedelta(minutes=90, seconds=30)
        raise RuntimeError
    assert detector.newest == T0 + timedelta(minutes=30)
    for k in range(40):  # the stream reaches the stray: it counts, in its own minute
        detector.observe(["topic:x"], T0 + timedelta(minutes=31 + k * 1.5), False, f"c{k}")
    assert detector.newest == T0 + timedelta(minutes=89, seconds=30)
    assert detector.window("topic:x").negative == 1 and detector.late == 0


def test_max_future_defaults_to_5_minutes_and_half_the_window_or_more_is_refused(tmp_path: Path) -> None:
    base = {"name": "m", "runs": {"sentiment": "runs/x"}}
    assert MonitorConfig.from_dict(base).max_future_s == 300  # the 30-minute window
    assert config(tmp_path).max_future_s == 150  # a quarter of a 10-minute window
    assert MonitorConfig.from_dict({**base, "max_future": "14m"}).max_future_s == 840
    with pytest.raises(
        ConfigError, match=r"max_future: '15m' \(900s\) must be under half the detector window"
    ) as info:
        MonitorConfig.from_dict({**base, "max_future": "15m"})
    assert "\n" not in str(info.value) and "surge" in str(info.value)
    with pytest.raises(ConfigError, match="max_future: '1h'"):
        MonitorConfig.from_dict({**base, "max_future": "1h"})  # the old default


def test_a_document_too_far_ahead_asks_whether_it_is_a_local_time_read_as_utc() -> None:
    with pytest.raises(ValueError, match="is after") as info:
        parse_document({"id": "a", "time": "2026-03-02T10:30:00", "text": "x"}, latest=T0)
    assert "a local time without an offset? times without one are read as UTC" in str(info.value)


# -- 2. a trend without from over a stray old document ----------------------------------------------


def test_a_trend_without_from_over_a_1970_document_is_cut_to_the_newest_buckets(tmp_path: Path) -> None:
    with Monitor(config(tmp_path), classifier=Classifier(FakeSentiment())) as monitor:
        monitor.ingest_batch(
            [{"id": "epoch", "time": 0, "text": "x"}, doc(1, 0, "shares falls"), doc(2, 90, "revenue steady")]
        )
        out = trend(monitor.store, "markets", bucket="1h")
        assert out["from_cut"] is True and len(out["buckets"]) == MAX_BUCKETS
        assert out["buckets"][-1]["start"] == (T0 + timedelta(hours=1)).isoformat()
        assert out["from"] == out["buckets"][0]["start"]
        assert sum(b["count"] for b in out["buckets"]) == 2  # the 1970 one is before the cut
        assert trend(monitor.store, "markets", bucket="1w")["from_cut"] is False  # 2,931 weeks fit
        with pytest.raises(DataError, match="buckets from 1970-01-01"):  # asked for: refused, not cut
            trend(monitor.store, "markets", bucket="1h", start="1970-01-01")


# -- 3. M is not a unit ------------------------------------------------------------------------------


def test_an_upper_case_m_is_refused_not_read_as_minutes() -> None:
    with pytest.raises(ConfigError, match=r"bucket: '1M': M is not a unit: minutes are m .*use 4w or 30d"):
        parse_duration("1M", "bucket")
    # the units that mean one thing only are read in either case, as before
    assert (parse_duration("1m", "x"), parse_duration("2H", "x"), parse_duration("1D", "x")) == (
        60,
        7200,
        86400,
    )


def test_a_trend_bucket_of_1M_is_a_bad_parameter(tmp_path: Path) -> None:
    with Monitor(config(tmp_path), classifier=Classifier(FakeSentiment())) as monitor:
        monitor.ingest_batch([doc(1, 0, "x")])
        with pytest.raises(DataError, match="M is not a unit"):
            trend(monitor.store, "markets", bucket="1M")
        with pytest.raises(ConfigError, match=r"detector\.window: '30M': M is not a unit"):
            config(tmp_path, detector={"window": "30M"})


# -- 4. a '+' typed into a URL -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["2026-03-02T09:30:00 01:00", "2026-03-02 09:30 0100", "2026-03-02T09:30:00.5 01"]
)
def test_a_space_where_the_offset_belongs_says_a_plus_in_a_url_is_2b(value: str) -> None:
    with pytest.raises(ValueError, match="is not ISO 8601") as info:
        parse_time(value)
    assert "a '+' in a URL must be written %2B, or use Z" in str(info.value)
    with pytest.raises(ValueError) as other:
        parse_time("2026-03-02T09:30:00 soon")
    assert "%2B" not in str(other.value)
