"""A monitor's trend as JSON-ready buckets: what ``GET /v1/apps/monitor/{name}/trend`` returns.

    trend(store, "markets", topic="earnings", start="2026-03-01", end="2026-03-08", bucket="1h")
    -> {"monitor": "markets", "topic": "earnings", "company": null, "bucket": "1h", "bucket_s": 3600,
        "from": "...", "to": "...", "from_cut": false,
        "buckets": [{"start", "count", "negative", "negative_share"}, ...], "alerts": [...]}

Buckets are aligned to UTC (a ``1d`` bucket starts at midnight UTC), and a bucket of whole weeks
to Monday 00:00 UTC (ISO weeks; the epoch, 1970-01-01, was a Thursday, so epoch-aligned weeks ran
Thursday to Wednesday); empty buckets between ``from`` and ``to`` are listed with zero counts, so a
chart's time axis has no holes. Without ``from`` the range starts at the first document, or
``MAX_BUCKETS`` buckets before the end when that is later (``from_cut`` true): one document dated
1970 (epoch 0) made every trend without ``from`` a 422, for good.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from tunelab.apps.monitor.classify import normalise_company
from tunelab.apps.monitor.config import parse_duration
from tunelab.apps.monitor.documents import parse_time
from tunelab.errors import ConfigError, DataError

MAX_BUCKETS = 5000
WEEK_S = 7 * 86_400
MONDAY_S = 4 * 86_400  # 1970-01-05T00:00Z, the first Monday after the epoch


def bucket_origin(step: int) -> int:
    """Epoch seconds a bucket of ``step`` seconds is aligned to: a Monday for whole weeks (ISO
    weeks, as people read a weekly chart), else the epoch (midnight UTC for days and hours)."""
    return MONDAY_S if step % WEEK_S == 0 else 0


def _when(value: datetime | str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        if isinstance(value, datetime):  # naive: UTC, as for documents
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return parse_time(value)
    except (ValueError, OverflowError) as exc:
        raise DataError(f"{name}: {exc}") from None


def _at(epoch: int, bucket: str | int) -> datetime:
    """The UTC time of ``epoch`` seconds; a bucket boundary before the year 1 or after 9999
    (a ``from`` of 0001-01-01 with weekly buckets) is a bad parameter, not a server error."""
    try:
        return datetime.fromtimestamp(epoch, tz=UTC)
    except (OverflowError, ValueError, OSError):
        raise DataError(
            f"bucket {bucket}: its buckets would reach beyond the years 1 to 9999; "
            "give a later from, an earlier to or a shorter bucket"
        ) from None


def bucket_seconds(bucket: str | int) -> int:
    """``"1h"`` -> 3600; refuses what is not a duration, naming ``bucket``."""
    try:
        return parse_duration(bucket, "bucket")
    except ConfigError as exc:
        raise DataError(str(exc)) from None


def trend(
    store: Any,
    name: str,
    *,
    topic: str | None = None,
    company: str | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    bucket: str | int = "1h",
    aliases: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Documents and negative share per bucket for one monitor, topic and/or company.

    Args:
        store: the monitor store (``open_monitor_store``).
        name: the monitor.
        topic: only documents of this topic; company: only those naming this company (the name
            is normalised as the classifier does, so "Acme Corp." finds "acme"; ``aliases``:
            the monitor's ``companies.aliases``, so an alias finds the name it is followed under).
        start: a time in the first bucket, ISO 8601 or epoch seconds; default: the first document,
            or ``MAX_BUCKETS`` buckets before the end if that is later (``from_cut`` says so).
        end: the end (exclusive; the bucket it falls in counts whole); default: after the last document.
            Buckets are UTC-aligned and always whole.
        bucket: bucket length (``15m``, ``1h``, ``1d``).

    Raises:
        UnknownMonitorError: no monitor is called ``name``.
        DataError: a bad time or bucket, ``from`` not before ``to``, or too many buckets.
    """
    store.check_monitor(name)
    step = bucket_seconds(bucket)
    origin = bucket_origin(step)
    begin, finish = _when(start, "from"), _when(end, "to")
    if begin is not None and finish is not None and begin >= finish:
        raise DataError(f"from {begin.isoformat()} is not before to {finish.isoformat()}")
    key_company = normalise_company(company, aliases) if company else None
    if company and key_company is None:  # "!!!": no name left, and no filter is not what was asked
        raise DataError(f"company {company!r} names no company (nothing is left of it once normalised)")
    if begin is None or finish is None:
        span = store.time_range(name)
        if span is not None:
            begin = begin or span[0]
            finish = finish or _at(math.floor(span[1].timestamp()) + 1, bucket)
            # One side given and past the documents (a from after the last one: "nothing since"):
            # one empty bucket at the given side, not a range that ends before it starts.
            if begin >= finish and end is None:
                finish = _at(origin + ((math.floor(begin.timestamp()) - origin) // step + 1) * step, bucket)
            elif begin >= finish:
                begin = _at(origin + (math.ceil((finish.timestamp() - origin) / step) - 1) * step, bucket)
    # Bucket b covers origin + b * step up to the next one.
    first = (math.floor(begin.timestamp()) - origin) // step if begin else None
    last = math.ceil((finish.timestamp() - origin) / step) if finish else None  # exclusive index
    cut = False
    if start is None and first is not None and last is not None and last - first > MAX_BUCKETS:
        # The range is the stored documents', not one asked for: its newest MAX_BUCKETS buckets.
        first, cut = last - MAX_BUCKETS, True
        begin = _at(origin + first * step, bucket)
    if first is not None and last is not None and last - first > MAX_BUCKETS:
        raise DataError(
            f"bucket {bucket}: {last - first:,} buckets from {begin:%Y-%m-%d %H:%M} "
            f"to {finish:%Y-%m-%d %H:%M} "
            f"(the limit is {MAX_BUCKETS:,}); use a larger bucket or a shorter range"
        )
    rows = store.bucket_counts(
        name,
        bucket_s=step,
        origin_s=origin,
        topic=topic,
        company=key_company,
        # Whole buckets: each is labelled by its start, so it counts from its start to its end even
        # where from/to fall inside it (a from of 06:30 with 1h buckets: the 06:00 bucket is 06:00-07:00).
        start_epoch=origin + first * step if first is not None else None,
        end_epoch=origin + last * step if last is not None else None,
    )
    counts = {b: (n, neg) for b, n, neg in rows}
    indexes = range(first, last) if first is not None and last is not None else sorted(counts)
    buckets = []
    for b in indexes:
        n, neg = counts.get(b, (0, 0))
        buckets.append(
            {
                "start": _at(origin + b * step, bucket).isoformat(),
                "count": n,
                "negative": neg,
                "negative_share": round(neg / n, 4) if n else None,
            }
        )
    keys = [
        k
        for k in (f"topic:{topic}" if topic else None, f"company:{key_company}" if key_company else None)
        if k
    ]
    # In SQL: the alerts overlapping the range (not every alert before its end), of the one key
    alerts = [
        a.to_dict()
        for a in store.alerts(name, until=finish, ended_since=begin, key=keys[0] if len(keys) == 1 else None)
        if not keys or a.key in keys
    ]
    return {
        "monitor": name,
        "topic": topic,
        "company": key_company,
        "bucket": str(bucket),
        "bucket_s": step,
        "from": begin.isoformat() if begin else None,
        "to": finish.isoformat() if finish else None,
        # True: no from was given and the stored documents span more than MAX_BUCKETS buckets, so
        # "from" is where the newest MAX_BUCKETS start, not the first document's bucket.
        "from_cut": cut,
        "buckets": buckets,
        "alerts": alerts,
    }
