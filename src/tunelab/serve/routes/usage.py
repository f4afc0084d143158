"""``GET /v1/usage``: the caller's own usage (requests, texts, tokens) over a time window."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from tunelab.serve.deps import Caller, State
from tunelab.serve.inputs import refuse_compact_date
from tunelab.serve.request_limits import RequestLimitError
from tunelab.serve.responses import AUTH, error_responses

router = APIRouter(tags=["usage"])
DEFAULT_DAYS = 31  # without since: the last month, not every row the key ever had
MAX_DAYS = 366
_EARLIEST = datetime.min.replace(tzinfo=UTC)
#: A time whose offset lost its '+': a URL's query reads an unencoded '+' as a space.
_SPACE_OFFSET = re.compile(r"\d\d:\d\d(:\d\d(\.\d+)?)? \d\d(:?\d\d)?$")
_SHOWN_CHARS = 60
_ISO_EXAMPLES = "2026-03-01, 2026-03-01T09:30:00Z or 2026-03-01T09:30:00%2B01:00"


def parse_query_time(text: str, field: str) -> datetime:
    """``text`` (a ``since``/``until`` query value) as an aware UTC datetime, read as ``tunelab usage
    --since/--until`` reads a date or time: ISO 8601 by ``datetime.fromisoformat``, naive = UTC.

    Typed ``datetime``, pydantic read digits as epoch seconds (milliseconds past 2e10): ``20260301``
    was a 100-second window in 1970 answered with zeros, where the CLI reads it as 2026-03-01 and the
    monitor and recommender refuse it. Here eight digits that make a date are refused as ambiguous
    (the monitor's rule, naming the ISO form), and other digits are refused as the CLI refuses them
    (no epoch times); the CLI's ages (``7d``) are its own, not the API's.

    Raises:
        RequestValidationError: the service's usual 422 naming ``query.<field>`` and why.
    """
    value = text.strip()
    shown = repr(value if len(value) <= _SHOWN_CHARS else value[: _SHOWN_CHARS - 3] + "...")
    try:
        if value.isascii() and value.isdigit():
            if len(value) == 8:
                refuse_compact_date(int(value))  # a date: raises, naming it as ISO 8601
            raise ValueError(
                f"time {shown} is not ISO 8601 (epoch seconds are not taken): write {_ISO_EXAMPLES}"
            )
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            if _SPACE_OFFSET.search(value):
                raise ValueError(
                    f"time {shown} has a space where its offset's sign belongs: a '+' in a URL reads "
                    "as a space, so write it %2B (2026-03-01T09:30:00%2B01:00) or give the time in "
                    "UTC with Z"
                ) from None
            raise ValueError(f"time {shown} is not ISO 8601: write {_ISO_EXAMPLES}") from None
        try:  # 0001-01-01T00:00+01:00 parses, but in UTC it is before year 1: a 500 before
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"time {shown} is out of the range of dates in UTC") from None
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("query", field), "msg": str(exc), "type": "value_error", "input": text}]
        ) from None


@router.get("/usage", responses=error_responses(*AUTH, 422, 429))
async def usage(
    state: State,
    caller: Caller,
    # Strings, read by parse_query_time: typed datetime, digits were taken as epoch seconds.
    since: Annotated[
        str | None,
        Query(
            description=(
                "ISO 8601 date or date-time (2026-03-01, 2026-03-01T09:30:00Z; no offset: UTC; "
                f"write an offset's '+' as %2B); default: {DEFAULT_DAYS} days before until"
            )
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(description="ISO 8601 date or date-time, as since; exclusive; default: now"),
    ] = None,
) -> dict[str, Any]:
    """What the key in the request has used: totals, per model and status, and its quota left."""
    # Parsed before the rate is taken: a refused value takes it in the 422 handler, as a schema error did.
    since_at = parse_query_time(since, "since") if since is not None else None
    until_at = parse_query_time(until, "until") if until is not None else None
    # A read over all of a key's rows. It does not hold up other clients' key checks and usage rows
    # (SQLite reads on read-only WAL connections of their own; at most REPORTS_AT_ONCE reports hold
    # PostgreSQL pool connections), but it still costs the database I/O and CPU: the key's rate
    # applies, and the window is bounded.
    await run_in_threadpool(state.access.admit_rate, caller)
    end = until_at if until_at is not None else datetime.now(UTC)
    # until near year 1: a month before it is out of range (a 500 before)
    start = (
        since_at
        if since_at is not None
        else max(end, _EARLIEST + timedelta(days=DEFAULT_DAYS)) - timedelta(days=DEFAULT_DAYS)
    )
    if start >= end:  # an empty window answered zeros, where `tunelab usage` refuses it
        raise RequestLimitError(
            f"since ({start.isoformat()}) must be before until ({end.isoformat()})",
            status=422,
            code="invalid_parameter",
        )
    if end - start > timedelta(days=MAX_DAYS):
        raise RequestLimitError(
            f"since..until spans {end - start}, more than {MAX_DAYS} days; "
            f"ask for at most {MAX_DAYS} at a time",
            status=422,
            code="invalid_parameter",
        )
    async with state.reports:  # at most REPORTS_AT_ONCE aggregates hold database connections
        # the resolved end: the answer names its own window ("until": null did not), and rows written
        # while the report runs stay out of a window whose since was taken from that end
        return await run_in_threadpool(state.access.usage_summary, caller, start, end)
