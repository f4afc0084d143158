"""``tunelab app monitor report``: one self-contained HTML page of a monitor's trends and alerts.

For the whole feed, then per topic and per company (the most mentioned), documents and negative
documents per bucket with the negative share over them, a key's alert episodes shaded on the time
axis; then the newest ``ALERTS_LISTED`` alerts, newest first, with the documents that triggered them.
Built with tunelab's report model (``tunelab.evaluate.render``: inline CSS, plots as base64 data
URIs) and matplotlib figures drawn like the evaluation report's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tunelab.apps.monitor.detector import Alert
from tunelab.apps.monitor.trend import trend
from tunelab.apps.out_path import check_out_parents
from tunelab.atomic import atomic_write_text
from tunelab.errors import DataError
from tunelab.evaluate.render import Image, Section, Table, Text, to_html

_BUCKETS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86_400, 7 * 86_400)
_BUCKET_NAMES = {
    60: "1m",
    300: "5m",
    900: "15m",
    3600: "1h",
    10_800: "3h",
    21_600: "6h",
    86_400: "1d",
    604_800: "1w",
}
TARGET_BUCKETS = 120
EXCERPT = 240
ALERTS_LISTED = 200
"""Alerts the report lists, the newest: each comes with a table of up to 50 documents, and 2,000
alerts made a 23 MB page; the rest are read from the alerts route."""


def _minute(at: datetime) -> str:
    """``at`` to the minute, its year in four digits: strftime's ``%Y`` wrote year 1 as "1"."""
    return at.isoformat(sep=" ", timespec="minutes")[:16]


def choose_bucket(start: datetime, end: datetime, target: int = TARGET_BUCKETS) -> str:
    """The shortest standard bucket that cuts ``start..end`` into at most ``target`` buckets."""
    seconds = max(1.0, (end - start).total_seconds())
    for step in _BUCKETS:
        if seconds / step <= target:
            return _BUCKET_NAMES[step]
    return "1w"


def trend_png(series: dict[str, Any], title: str) -> bytes:
    """Bars of documents and negative documents per bucket, the negative share as a line on a
    second axis, and alert episodes as shaded spans (a line where each started)."""
    from matplotlib import dates as mdates
    from matplotlib.ticker import MaxNLocator

    from tunelab.evaluate.plots import figure_png, new_figure  # the evaluation report's setup

    buckets = series["buckets"]
    times = [datetime.fromisoformat(b["start"]) for b in buckets]
    width = series["bucket_s"] / 86_400 * 0.9  # bar width in days, matplotlib's date unit
    fig = new_figure(9.0, 3.2)
    ax = fig.add_subplot()
    ax.bar(
        times, [b["count"] for b in buckets], width=width, align="edge", color="#c9d1d9", label="documents"
    )
    ax.bar(
        times, [b["negative"] for b in buckets], width=width, align="edge", color="#d1242f", label="negative"
    )
    ax.set_ylabel("documents per bucket")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.2-document ticks
    share = ax.twinx()
    share.plot(
        [mdates.date2num(t) + width / 2 for t in times],  # mid-bucket
        [b["negative_share"] if b["negative_share"] is not None else float("nan") for b in buckets],
        color="#0969da",
        linewidth=1.2,
        # a marker per bucket: a bucket between empty ones (a company named now and then, a new
        # monitor's single bucket) is a lone point, which a line alone does not draw at all
        marker="o",
        markersize=3,
        label="negative share",
    )
    share.set_ylim(0, 1.05)
    share.set_ylabel("negative share")
    end = times[-1] if times else None
    for alert in series["alerts"]:
        started = datetime.fromisoformat(alert["started_at"])
        ended = datetime.fromisoformat(alert["ended_at"]) if alert["ended_at"] else end or started
        ax.axvspan(started, max(ended, started), color="#d1242f", alpha=0.12)
        ax.axvline(started, color="#d1242f", linewidth=1.0, linestyle="--")
    if times:
        # The buckets' own span, without matplotlib's margins: for a feed dated 0001-01-01 (some
        # feeds' "unknown") the margin fell below year 1, which matplotlib cannot draw.
        ax.set_xlim(times[0], times[-1] + timedelta(seconds=series["bucket_s"]))
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    ax.set_title(title, parse_math=False)  # a topic or company name may hold "$": never TeX
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = share.get_legend_handles_labels()
    ax.legend(handles + more, labels + more_labels, loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return figure_png(fig)


def _alert_rows(alerts: Sequence[Alert]) -> list[list[str]]:
    rows = []
    for a in alerts:
        pct = a.kind == "negative_share"
        rows.append(
            [
                _minute(a.started_at),
                _minute(a.ended_at) if a.ended_at else "ongoing",
                a.key,
                a.kind.replace("_", " "),
                f"{a.level:.1f}",
                f"{a.baseline:.0%}" if pct else f"{a.baseline:.1f}",
                f"{a.observed:.0%}" if pct else f"{a.observed:.0f}",
                str(len(a.docs)),
            ]
        )
    return rows


def build_report(
    store: Any, name: str, *, companies: int = 8, topics: int = 12
) -> tuple[list[Section], dict[str, bytes]]:
    """The report's sections and the PNGs they show (see ``write_report``)."""
    store.check_monitor(name)
    span = store.time_range(name)
    if span is None:
        return [Section("Summary", [Text(f"Monitor {name} has stored no documents yet.")])], {}
    start, end = span
    alerts = store.alerts(name, newest=True, limit=ALERTS_LISTED)
    total = store.count_alerts(name)  # after: an alert stored in between is counted, not listed
    # The plots cover at most TARGET_BUCKETS weeks back from the newest document: one stray old
    # date (0001-01-01 stands for "unknown" in some feeds) would otherwise ask for thousands of
    # weekly buckets, more than a trend gives, and the report could not be written at all.
    # Compared as a span, not as end - 120 weeks: that is below year 1 for a feed dated near
    # 0001-01-01 only, and the report failed with an OverflowError.
    shown = end - timedelta(weeks=TARGET_BUCKETS) if end - start > timedelta(weeks=TARGET_BUCKETS) else start
    bucket = choose_bucket(shown, end)
    images: dict[str, bytes] = {}
    cut = (
        f" Plots start at {shown.date().isoformat()}: older documents are counted above but not plotted."
        if shown > start
        else ""
    )
    summary = [
        Text(
            f"{store.count(name):,} documents from {_minute(start)} to {_minute(end)} UTC, "
            f"{total:,} alert{'s' if total != 1 else ''}; plots in buckets of {bucket}.{cut}"
        )
    ]
    # The whole feed first: a monitor with no topics and no companies (sentiment only) has no other
    # chart. Its alerts are left out: they are each key's, shaded on that key's chart below.
    feed = {**trend(store, name, bucket=bucket, start=shown), "alerts": []}
    images["feed.png"] = trend_png(feed, "all documents")
    summary.append(Image("feed.png", f"all documents: documents and negative share per {bucket}"))
    sections = [Section("Summary", summary)]
    for scope, title, limit in (("topic", "Topics", topics), ("company", "Companies", companies)):
        blocks: list[Any] = []
        rows = []
        for key, count in store.top_keys(name, scope, limit):
            series = trend(store, name, bucket=bucket, start=shown, **{scope: key})
            # the share over the plotted buckets, both sides: the negatives were counted over them
            # and divided by every document ever (ten old negatives and ten new positives showed 0%)
            negative = sum(b["negative"] for b in series["buckets"])
            plotted = sum(b["count"] for b in series["buckets"])
            share = f"{negative / plotted:.0%}" if plotted else "-"
            rows.append([key, f"{count:,}", share, str(len(series["alerts"]))])
            file = f"{scope}-{len(images)}.png"
            images[file] = trend_png(series, f"{scope} {key}")
            blocks.append(Image(file, f"{scope} {key}: documents and negative share per {bucket}"))
        if rows:
            since = f" since {shown.date().isoformat()}" if cut else ""
            columns = [scope, "documents", f"negative{since}", f"alerts{since}"]
            table = Table(columns, rows, right=frozenset({1, 2, 3}))
            sections.append(Section(title, [table, *blocks]))
    if alerts:
        older = total - len(alerts)
        listed = (
            f"The newest {len(alerts):,} of {total:,} alerts, newest first; the {older:,} older "
            f"one{'s are' if older != 1 else ' is'} not listed here: read them from "
            f"GET /v1/apps/monitor/{name}/alerts (tunelab serve --monitor; oldest first, paged with "
            "limit and after)."
            if older > 0
            else f"{total:,} alert{'s' if total != 1 else ''}, newest first."
        )
        blocks = [
            Text(listed),
            Table(
                ["started (UTC)", "ended (UTC)", "key", "kind", "level", "baseline", "observed", "documents"],
                _alert_rows(alerts),
                right=frozenset({4, 5, 6, 7}),
            ),
        ]
        # One read for every listed alert's documents (in chunks), not one per alert.
        stored = {d["id"]: d for d in store.documents(name, sorted({i for a in alerts for i in a.docs}))}
        for a in alerts:
            docs = sorted((stored[i] for i in set(a.docs) if i in stored), key=lambda d: (d["time"], d["id"]))
            blocks.append(
                Text(f"Alert {a.id} on {a.key} at {_minute(a.started_at)} UTC: triggering documents")
            )
            blocks.append(
                Table(
                    ["time (UTC)", "id", "sentiment", "text"],
                    [[_minute(d["time"]), d["id"], d["label"], _excerpt(d["text"])] for d in docs],
                )
            )
        sections.append(Section("Alerts", blocks))
    return sections, images


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT else flat[: EXCERPT - 1] + "…"


def _title(name: str) -> str:
    return f"Monitor {name}"


def _is_report_of(path: Path, name: str) -> bool:
    """Whether ``path`` is a report ``write_report`` wrote for monitor ``name``: its head holds
    the page title (the HTML-escaped name, as ``to_html`` writes it)."""
    import html

    try:
        with path.open("rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    return f"<title>{html.escape(_title(name))} (report of " in head


def write_report(store: Any, name: str, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the monitor's HTML dashboard to ``out`` (atomically) and return its path.

    An existing ``out`` is replaced only when it is an earlier report of this monitor (rerunning
    refreshes it) or with ``overwrite``: any file was replaced, a training file named by mistake too.

    Raises:
        DataError: ``out`` is a folder, a pipe or device, or a file that is not this monitor's report (without
            ``overwrite``), before the report is built.
        ConfigError: a folder above ``out`` is a file (before the report is built: writing it
            failed only after the whole build, "unexpected FileExistsError").
    """
    if Path(out).is_dir():
        raise DataError(
            f"--out {out}: a folder; give the report's file name, e.g. {Path(out) / 'report.html'}"
        )
    if Path(out).exists() and not Path(out).is_file():
        # a FIFO: reading its head to tell a report from another file waited for a writer forever
        raise DataError(f"--out {out}: a pipe or device, not a regular file; give the report's file name")
    existed = Path(out).exists()
    if existed and not overwrite and not _is_report_of(Path(out), name):
        raise DataError(
            f"--out {out} exists and is not a report of monitor {name}; give another file, or "
            "--overwrite to replace it"
        )
    check_out_parents(Path(out))
    sections, images = build_report(store, name)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = to_html(f"{_title(name)} (report of {stamp})", sections, images)
    try:
        # a file that was not there when the build began must still not be there: another report
        # to the same --out meanwhile (another monitor's) was replaced, both saying they succeeded
        return atomic_write_text(out, page, new=not (overwrite or existed))
    except FileExistsError:
        raise DataError(
            f"--out {out} was written by another process while this report was built; give another "
            "file, or --overwrite to replace it"
        ) from None
