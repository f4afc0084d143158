"""``GET /v1/usage``: the caller's own usage (requests, texts, tokens) over a time window."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from tunelab.serve.deps import Caller, State
from tunelab.serve.responses import AUTH, error_responses

router = APIRouter(tags=["usage"])


@router.get("/usage", responses=error_responses(*AUTH, 422))
async def usage(
    state: State,
    caller: Caller,
    since: Annotated[
        datetime | None, Query(description="ISO 8601; default: start of the quota window")
    ] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601, exclusive; default: now")] = None,
) -> dict[str, Any]:
    """What the key in the request has used: totals, per model and status, and its quota left."""
    return await run_in_threadpool(state.access.usage_summary, caller, since, until)
