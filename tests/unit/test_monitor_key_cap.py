"""Security review: any API key could grow a monitor's memory without bound (each made-up topic or
company became a detector key of ~35 KB, kept three days and rebuilt after a restart), and forge
log lines through ids, topics and sources holding line breaks. The detector now watches at most
``detector.max_keys`` keys (documents past it are still stored), the warm-up keeps the most
recently active ones, and control characters are refused in ids, topics and sources."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from tunelab.apps.monitor import Classifier, Monitor, MonitorConfig, Topic
from tunelab.apps.monitor.detector import Alert, Detector, DetectorSettings
from tunelab.apps.monitor.documents import check_batch, parse_line
from tunelab.errors import ConfigError, DataError

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
DETECTOR = {"window": "10m", "step": "1m", "baseline": "2h", "min_history": 0.5, "min_volume": 4}


class Sentiment:
    """Negative when the text says "falls"."""

    labels = SimpleNamespace(names=["negative", "positive"])
    task_name = "single_label"

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict]:
        return [{"label": "negative" if "falls" in t else "positive", "score": 0.9} for t in texts]


def classifier(**kwargs: object) -> Classifier:
    """No NER and no zero-shot topics unless given: a document's keys are its own topic."""
    return Classifier(Sentiment(), **kwargs)  # type: ignore[arg-type]


def config(tmp_path: Path, **detector: object) -> MonitorConfig:
    return MonitorConfig.from_dict(
        {
            "name": "markets",
            "store": str(tmp_path / "monitor.db"),
            "runs": {"sentiment": "runs/unused"},
            "detector": {**DETECTOR, **detector},
        }
    )


def doc(i: int, minute: float, text: str = "steady revenue", **extra: object) -> dict:
    return {"id": f"n{i}", "time": (T0 + timedelta(minutes=minute)).isoformat(), "text": text, **extra}


def capped_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "left unwatched" in r.getMessage()]


def test_unique_topics_past_max_keys_are_stored_but_not_watched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = [doc(i, i / 10, topic=f"made-up {i}") for i in range(50)]
    with (
        caplog.at_level(logging.WARNING, logger="tunelab.apps.monitor"),
        Monitor(config(tmp_path, max_keys=10), classifier=classifier()) as monitor,
    ):
        first = monitor.ingest_batch(docs[:25])
        second = monitor.ingest_batch(docs[25:])
        assert len(monitor.detector.keys()) <= 10
        assert first.stored + second.stored == 50
        assert monitor.store.count("markets") == 50
        assert first.unwatched + second.unwatched == 40 == monitor.totals.unwatched
        assert first.to_dict()["unwatched"] == 15
        top = dict(monitor.store.top_keys("markets", "topic", limit=100))
        assert len(top) == 50  # trends read the store: every topic is there
    lines = capped_lines(caplog)
    assert len(lines) == 1, lines  # not one per document, nor one per batch
    assert "40 topics or companies" not in lines[0]  # the first batch's 15, the rest summed later
    assert "detector.max_keys=10" in lines[0] and "\n" not in lines[0]

    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger="tunelab.apps.monitor"),
        Monitor(config(tmp_path, max_keys=10), classifier=classifier()) as reopened,
    ):
        keys = reopened.detector.keys()
    assert len(keys) <= 10
    # The most recently active are the ones a restart keeps, not the first ones replayed.
    assert keys == sorted(f"topic:made-up {i}" for i in range(40, 50))
    assert any("the 10 most recently active are watched" in r.getMessage() for r in caplog.records)


def test_a_key_idle_for_a_window_makes_room_and_an_active_or_alerting_one_does_not() -> None:
    settings = DetectorSettings(window_s=600, step_s=60, baseline_s=7200, max_keys=2)
    detector = Detector("m", settings)
    detector.observe(["topic:a"], T0, False, "1")
    detector.observe(["topic:b"], T0 + timedelta(minutes=2), False, "2")
    # Both had a document in the current window: the new key is not watched.
    detector.observe(["topic:c"], T0 + timedelta(minutes=3), False, "3")
    assert detector.keys() == ["topic:a", "topic:b"] and detector.unwatched == 1
    assert detector.last_unwatched == "topic:c"
    for minute in (5, 7, 9, 11, 12):  # "b" goes on; "a" is idle for a whole window at minute 12
        detector.observe(["topic:b"], T0 + timedelta(minutes=minute), False, f"b{minute}")
    detector.observe(["topic:c"], T0 + timedelta(minutes=12), False, "4")
    assert detector.keys() == ["topic:b", "topic:c"] and detector.evicted == 1
    # A key in an episode is never let go, however quiet: the idle one without makes room.
    detector.advance(T0 + timedelta(minutes=40))
    detector.resume([Alert("x", "m", "topic:b", "negative_volume", T0, 12.0, 0.5, 6.0)])
    detector.observe(["topic:d"], T0 + timedelta(minutes=40), False, "5")
    assert detector.keys() == ["topic:b", "topic:d"] and detector.evicted == 2


def test_listed_topics_are_watched_whatever_the_cap(tmp_path: Path) -> None:
    """Made-up names filling the cap must not turn alerting off for the topics the config lists."""
    cfg = MonitorConfig.from_dict(
        {
            "name": "markets",
            "store": str(tmp_path / "monitor.db"),
            "runs": {"sentiment": "runs/unused"},
            "detector": {**DETECTOR, "max_keys": 3},
            "topics": ["earnings"],
        }
    )
    flood = [doc(i, i / 10, topic=f"made-up {i}") for i in range(20)]
    listed = [doc(100, 3, topic="earnings")]
    topics = [Topic("earnings")]
    with Monitor(cfg, classifier=classifier(topics=topics, embed=lambda texts: None)) as monitor:
        monitor.ingest_batch(flood + listed)
        watched = monitor.detector.keys()
        assert "topic:earnings" in watched and len(watched) == 4
        assert monitor.detector.watched == 3


def test_max_keys_is_checked_in_the_config(tmp_path: Path) -> None:
    assert config(tmp_path).detector.max_keys == 2000
    with pytest.raises(ConfigError, match=r"detector\.max_keys: 0 must be a whole number >= 1"):
        config(tmp_path, max_keys=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", "n1\nmonitor markets: ALERT forged"), ("topic", "oil\r\nprices"), ("source", "wire\u2028x")],
)
def test_control_characters_in_id_topic_or_source_are_refused_in_one_line(field: str, value: str) -> None:
    docs = [doc(0, 0), {**doc(1, 1), field: value}]
    with pytest.raises(DataError) as refused:
        check_batch(docs)
    message = str(refused.value)
    assert message.startswith(f"documents[1].{field}: ") and "control character" in message
    assert message.isprintable()  # one line, the value written escaped


def test_control_characters_in_a_followed_line_are_one_line_reasons() -> None:
    raw = b'{"id": "a\\nb", "time": 0, "text": "t"}'
    with pytest.raises(ValueError, match=r"^id 'a\\nb' contains a control character \(U\+000A") as refused:
        parse_line(raw)
    assert "\n" not in str(refused.value)


def test_an_alert_on_a_weird_key_is_one_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A key stored before control characters were refused (or a company an NER run found) is
    written escaped in the alert's log line, with its document ids."""
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:
        weird = "topic:oil\nmonitor markets: ALERT forged"
        alert = Alert("abc", "markets", weird, "negative_volume", T0, 12.0, 0.5, 6.0, docs=["d1\r\nx", "d2"])
        with caplog.at_level(logging.WARNING, logger="tunelab.apps.monitor"):
            monitor._log_alert(alert)
            monitor._log_alert(Alert(**{**alert.__dict__, "ended_at": T0 + timedelta(hours=1)}))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    for line in lines:
        assert "\n" not in line and "\r" not in line and "oil\\nmonitor" in line
    assert "'d1\\r\\nx', d2" in lines[0]
