"""Review fixes to the HTML pages' content: the monitor dashboard (newest alerts only, a whole-feed
chart always) and the evaluation report's plots (no per-glyph matplotlib warnings, a confusion
matrix whose long labels stay on the canvas, a per-class F1 legend that hides no value)."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tunelab.apps.monitor import report as monitor_report
from tunelab.apps.monitor.classify import Classified
from tunelab.apps.monitor.detector import Alert, alert_id
from tunelab.apps.monitor.documents import Document
from tunelab.evaluate import plots
from tunelab.evaluate.render import Image, Table, Text

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def store_feed(store: Any, n: int = 30) -> None:
    """``n`` documents a minute apart with no topic and no company: a sentiment-only monitor."""
    docs = [
        Document(id=f"d{i}", time=T0 + timedelta(minutes=i), text=f"text {i}", topic=None) for i in range(n)
    ]
    results = [
        Classified("negative" if i % 3 == 0 else "positive", 0.9, i % 3 == 0, None, ()) for i in range(n)
    ]
    store.save("markets", docs, results)


def alert_at(minutes: int) -> Alert:
    started = T0 + timedelta(minutes=minutes)
    key = "topic:earnings"
    return Alert(
        alert_id("markets", key, started), "markets", key, "negative_share", started, 5.0, 0.2, 0.7, ["d1"]
    )


# --- 1: the dashboard lists the newest alerts, newest first, and says where the rest are ----------------


def test_store_reads_the_newest_alerts_first_and_pages_them(monitor_store) -> None:
    monitor_store.save_alerts([alert_at(m) for m in range(7)])
    assert monitor_store.count_alerts("markets") == 7
    newest = monitor_store.alerts("markets", newest=True, limit=3)
    assert [a.started_at for a in newest] == [T0 + timedelta(minutes=m) for m in (6, 5, 4)]
    following = monitor_store.alerts("markets", newest=True, limit=3, after=newest[-1].id)
    assert [a.started_at for a in following] == [T0 + timedelta(minutes=m) for m in (3, 2, 1)]
    assert [a.started_at for a in monitor_store.alerts("markets", limit=2)] == [T0, T0 + timedelta(minutes=1)]


def test_report_lists_the_newest_alerts_newest_first_and_says_where_the_older_are(
    monitor_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 alerts made a 23 MB page, each with its documents' table, oldest first."""
    store_feed(monitor_store)
    monitor_store.save_alerts([alert_at(m) for m in range(7)])
    monkeypatch.setattr(monitor_report, "ALERTS_LISTED", 3)
    asked: list[dict[str, Any]] = []
    alerts = monitor_store.alerts

    def spy(name: str, **kwargs: Any) -> list[Alert]:
        asked.append(kwargs)
        return alerts(name, **kwargs)

    monkeypatch.setattr(monitor_store, "alerts", spy)
    sections, _ = monitor_report.build_report(monitor_store, "markets")
    summary = next(b.text for b in sections[0].blocks if isinstance(b, Text))
    assert "7 alerts;" in summary  # all of them counted
    assert {"newest": True, "limit": 3} in asked  # the limit in the query, not a slice of all
    blocks = next(s for s in sections if s.title == "Alerts").blocks
    texts = [b.text for b in blocks if isinstance(b, Text)]
    assert texts[0] == (
        "The newest 3 of 7 alerts, newest first; the 4 older ones are not listed here: read them from "
        "GET /v1/apps/monitor/markets/alerts (tunelab serve --monitor; oldest first, paged with limit "
        "and after)."
    )
    table = next(b for b in blocks if isinstance(b, Table))
    assert [row[0] for row in table.rows] == ["2026-03-02 09:06", "2026-03-02 09:05", "2026-03-02 09:04"]
    assert sum("triggering documents" in t for t in texts) == 3


# --- 2: a monitor without topics and companies still gets a chart -----------------------------------


def test_a_sentiment_only_monitor_report_draws_the_whole_feed(monitor_store, tmp_path: Path) -> None:
    """No topic, no company: the page said "plots in buckets of 1m" and drew none."""
    store_feed(monitor_store)
    sections, images = monitor_report.build_report(monitor_store, "markets")
    shown = [b for s in sections for b in s.blocks if isinstance(b, Image)]
    assert len(shown) == 1 and set(images) == {shown[0].file} and images[shown[0].file].startswith(b"\x89PNG")
    assert shown[0].alt.startswith("all documents: ")
    page = monitor_report.write_report(monitor_store, "markets", tmp_path / "report.html").read_text("utf-8")
    assert page.count("data:image/png;base64,") == 1 and "plots in buckets of 1m" in page


# --- 3: no matplotlib warning per missing glyph ---------------------------------------------------------


@pytest.fixture
def fresh_fonts() -> Iterator[None]:
    def clear() -> None:
        plots.font_families.cache_clear()
        plots._warn_no_cjk_font.cache_clear()
        plots._covered.cache_clear()

    clear()
    yield
    clear()


def test_korean_labels_give_tunelabs_one_warning_and_none_of_matplotlibs_per_glyph(
    fresh_fonts: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A 3-class Korean run printed 44 "UserWarning: Glyph ... missing from font(s)" lines, even with -q."""
    labels = ["긍정적인", "부정적인", "중립"]
    with (
        caplog.at_level(logging.WARNING, logger="tunelab.evaluate.plots"),
        warnings.catch_warnings(record=True) as seen,
    ):
        warnings.simplefilter("always")
        plots.confusion_matrix_png([[3, 1, 0], [0, 2, 1], [1, 0, 4]], labels)
        plots.per_class_f1_png([{"label": n, "f1": 0.5} for n in labels], 0.5)
    glyphs = [str(w.message) for w in seen if re.search(r"Glyph \d+ .* missing from font", str(w.message))]
    assert glyphs == []
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "Korean" in notes[0]  # tunelab's own, once


# --- 4: the confusion matrix grows with its labels; the F1 legend hides no value -----------------------


def drawn(monkeypatch: pytest.MonkeyPatch, draw: Any) -> Any:
    """The figure ``draw`` builds, laid out as saved (figure_png would clear it)."""
    figures: list[Any] = []
    monkeypatch.setattr(plots, "figure_png", lambda fig: figures.append(fig) or b"")
    draw()
    fig = figures[0]
    fig.canvas.draw()
    return fig


@pytest.mark.parametrize("n", [3, 12, 13, 30])
def test_long_confusion_matrix_labels_keep_the_map_and_the_axis_titles_on_the_canvas(
    monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    """BANKING77-style names (40 characters drawn) shrank the map to a third and cut "true" off."""

    def layout(length: int) -> tuple[Any, Any]:
        names = [f"{i:02d}_" + "card_payment_wrong_exchange_rate_extra"[: length - 3] for i in range(n)]
        matrix = [[int(i == j) for j in range(n)] for i in range(n)]
        fig = drawn(monkeypatch, lambda: plots.confusion_matrix_png(matrix, names))
        return fig, fig.canvas.get_renderer()

    short_fig, renderer = layout(8)
    short = short_fig.axes[0].get_window_extent(renderer)
    fig, renderer = layout(40)
    ax = fig.axes[0]
    assert ax.yaxis.label.get_window_extent(renderer).x0 >= 0
    assert ax.xaxis.label.get_window_extent(renderer).y0 >= 0
    whole = fig.get_tightbbox(renderer)  # inches: every tick label, title and the colour bar's
    width, height = fig.get_size_inches()
    assert whole.x0 >= 0 and whole.y0 >= 0 and whole.x1 <= width + 0.02 and whole.y1 <= height + 0.02
    assert ax.get_window_extent(renderer).width >= 0.97 * short.width


def test_the_f1_legend_covers_no_bar_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every score high: the worst class's value, written at its bar end, lay under the legend."""
    rows = [{"label": f"class {i}", "f1": 0.99 - 0.02 * i} for i in range(3)]
    fig = drawn(monkeypatch, lambda: plots.per_class_f1_png(rows, 0.97))
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    values = [t.get_text() for t in ax.texts]
    assert values == ["0.99", "0.97", "0.95"]
    assert [t.get_text() for t in ax.texts if t.get_window_extent(renderer).overlaps(legend)] == []
    assert legend.y0 >= ax.get_window_extent(renderer).y1 - 1  # above the bars
    assert legend.x0 >= 0 and legend.x1 <= fig.bbox.x1 and legend.y1 <= fig.bbox.y1  # on the canvas
