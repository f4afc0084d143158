"""The monitor report's tables and charts say what the store holds: a share over one window (not
negatives of the plotted weeks over documents of all time), a point for a bucket between empty
ones, times said to be UTC."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from test_monitor_app import T0, classifier, config, doc

from tunelab.apps.monitor import Monitor
from tunelab.apps.monitor import report as report_module


def test_a_keys_negative_share_is_over_the_plotted_weeks_only(tmp_path: Path) -> None:
    """Ten negative documents three years back and ten positive ones now showed 0% negative: the
    plotted weeks' negatives divided by every document ever."""
    old = T0 - timedelta(days=3 * 365)
    docs = [doc(i, 0, "Acme Corp shares falls", topic="earnings") for i in range(10)]
    for i, d in enumerate(docs):
        d["time"] = (old + timedelta(minutes=i)).isoformat()
    docs += [doc(100 + i, i, "Acme Corp revenue steady", topic="earnings") for i in range(5)]
    docs += [doc(200 + i, 10 + i, "Acme Corp shares falls", topic="earnings") for i in range(5)]
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:
        monitor.ingest_batch(docs)
        sections, _ = report_module.build_report(monitor.store, "markets")
    topics = next(s for s in sections if s.title == "Topics")
    table = topics.blocks[0]
    since = "since 2023-11-13"  # 120 weeks back from the newest document (2026-03-02)
    assert table.headers == ["topic", "documents", f"negative {since}", f"alerts {since}"]
    assert table.rows[0][:3] == ["earnings", "20", "50%"]  # 5 of the 10 plotted, not 5 of 20


def test_a_bucket_between_empty_ones_gets_a_share_point_and_the_axis_says_utc(monkeypatch) -> None:
    import importlib

    drawn = []
    plots = importlib.import_module("tunelab.evaluate.plots")
    monkeypatch.setattr(plots, "figure_png", lambda fig: drawn.append(fig) or b"png")
    start = T0.isoformat()
    buckets = [
        {"start": (T0 + timedelta(hours=h)).isoformat(), "count": c, "negative": c, "negative_share": s}
        for h, (c, s) in enumerate([(1, 1.0), (0, None), (1, 1.0), (0, None)])
    ]
    report_module.trend_png({"buckets": buckets, "bucket_s": 3600, "alerts": [], "start": start}, "rates")
    ax, share = drawn[0].axes
    line = share.get_lines()[0]
    assert line.get_marker() == "o"  # a lone point between NaNs is drawn
    assert ax.get_xlabel() == "time (UTC)"
    assert all(float(t).is_integer() for t in ax.get_yticks())  # counts, no 0.2-document ticks
