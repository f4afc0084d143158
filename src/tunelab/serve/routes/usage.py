"""``GET /v1/usage``: the caller's own usage (requests, texts, tokens) over a time window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from tunelab.serve.deps import Caller, State
from tunelab.serve.limits import as_utc
from tunelab.serve.request_limits import RequestLimitError
from tunelab.serve.responses import AUTH, error_responses

router = APIRouter(tags=["usage"])
DEFAULT_DAYS = 31  # without since: the last month, not every row the key ever had
MAX_DAYS = 366
_EARLIEST = datetime.min.replace(tzinfo=UTC)


@router.get("/usage", responses=error_responses(*AUTH, 422, 429))
async def usage(
    state: State,
    caller: Caller,
    since: Annotated[
        datetime | None,
        Query(description=f"ISO 8601 (no offset: UTC); default: {DEFAULT_DAYS} days before until"),
    ] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601, exclusive; default: now")] = None,
) -> dict[str, Any]:
    """What the key in the request has used: totals, per model and status, and its quota left."""
    for field, value in (("since", since), ("until", until)):
        try:
            if value is not None:
                as_utc(value)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC: a 500 before
            raise RequestLimitError(
                f"{field}: {value.isoformat()} is out of the range of dates in UTC",
                status=422,
                code="invalid_parameter",
            ) from None
    # A read over all of a key's rows. It does not hold up other clients' key checks and usage rows
    # (SQLite reads on read-only WAL connections of their own; at most REPORTS_AT_ONCE reports hold
    # PostgreSQL pool connections), but it still costs the database I/O and CPU: the key's rate
    # applies, and the window is bounded.
    await run_in_threadpool(state.access.admit_rate, caller)
    end = as_utc(until) if until is not None else datetime.now(UTC)
    # until near year 1: a month before it is out of range (a 500 before)
    start = (
        as_utc(since)
        if since is not None
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
            f"since..until spans {(end - start).days} days; ask for at most {MAX_DAYS} at a time",
            status=422,
            code="invalid_parameter",
        )
    async with state.reports:  # at most REPORTS_AT_ONCE aggregates hold database connections
        # the resolved end: the answer names its own window ("until": null did not), and rows written
        # while the report runs stay out of a window whose since was taken from that end
        return await run_in_threadpool(state.access.usage_summary, caller, start, end)
