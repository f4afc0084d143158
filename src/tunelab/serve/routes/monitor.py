"""``/v1/apps/monitor``: the sentiment monitors a server ingests for (``tunelab serve --monitor``).

* ``POST /v1/apps/monitor/{name}/documents`` ``{"documents": [...]}``: classify and store a batch,
  all or nothing; the answer counts what was new and lists the alerts it opened. Billed like
  predict, a document as one text; the usage row names the app (``monitor``) and the monitor.
* ``GET /v1/apps/monitor/{name}/trend?topic=&company=&from=&to=&bucket=1h``: documents and negative
  share per bucket, with the key's alert episodes.
* ``GET /v1/apps/monitor/{name}/alerts?from=&to=&key=``: alert episodes, oldest first.

The document route checks in the order of cost, like predict: body size (as declared), key
(before the body is read), JSON, schema, the key's rate, monitor, document count, each document,
quota, then the classifier and the database (in the monitor's batcher thread, never on the event
loop). Reads need a key and are not billed;
they count against the key's rate and run in threads of their own (``MonitorRegistry.read``).
A monitor's documents and alerts are the same for every key (they are the institution's feed).
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from tunelab.errors import DataError
from tunelab.serve.deps import Context, MaybeCaller, State
from tunelab.serve.monitor_schemas import (
    AlertList,
    AlertOut,
    DocumentsRequest,
    IngestResponse,
    MonitorInfo,
    MonitorList,
    TrendResponse,
)
from tunelab.serve.request_limits import RequestLimitError
from tunelab.serve.responses import AUTH, JSON_BODY, error_responses

#: ``GET .../alerts``: alerts per response by default and at most (every alert ever, unbounded before).
DEFAULT_ALERTS, MAX_ALERTS = 1000, 10_000


router = APIRouter(prefix="/apps/monitor", tags=["monitor"])

INGEST_ERRORS = error_responses(
    *AUTH,
    *JSON_BODY,
    404,
    429,
    s404="unknown monitor",
    s413="body over the server's --max-body, or more documents than --max-texts",
    s422="a document without id or time, with an unparsable time or one further ahead of the clock "
    "than the monitor's max_future, an empty text or one over its max_text_chars (the message names "
    "its index); nothing of the batch is stored",
    s503="the database is unreachable, or usage could not be recorded (nothing was billed)",
)
# 429: a read takes the key's rate first, before the name is looked up (a limited key's 404s counted too)
READ_ERRORS = error_responses(*AUTH, 404, 422, 429, s404="unknown monitor", s422="a bad parameter, named")

NO_NUL = r"^[^\x00]{1,200}$"  # PostgreSQL text cannot hold NUL: refused here, not a 503 later
Topic = Annotated[str | None, Query(pattern=NO_NUL, description="only this topic's documents")]
Company = Annotated[
    str | None, Query(pattern=NO_NUL, description="only documents naming this company (normalised)")
]
From = Annotated[
    str | None,
    Query(
        alias="from", pattern=NO_NUL, description="start (inclusive): ISO 8601 (no offset: UTC) or epoch s"
    ),
]
To = Annotated[str | None, Query(pattern=NO_NUL, description="end (exclusive), like from")]


def _invalid(exc: Exception, code: str) -> RequestLimitError:
    return RequestLimitError(str(exc), status=422, code=code)


def _alerts_out(alerts: list) -> list[AlertOut]:
    return [AlertOut.model_validate(a.to_dict()) for a in alerts]


@router.get("", response_model=MonitorList, responses=error_responses(*AUTH, 429))
async def monitor_info(state: State, caller: MaybeCaller) -> MonitorList:
    """The monitors this server ingests for (``source``, the config file, for admin keys only)."""
    await _admit_read(state, caller)  # the key's rate, as on every app route (the README says so)
    admin = bool(getattr(caller, "admin", False))
    return MonitorList(
        monitors=[
            MonitorInfo(
                name=m.name,
                source=m.source if admin else None,
                loaded_at=m.loaded_at,
                following=m.following,
                webhook=m.webhook is not None,
            )
            for m in state.monitors.all()
        ]
    )


@router.post("/{name}/documents", response_model=IngestResponse, responses=INGEST_ERRORS)  # type: ignore[arg-type]
async def ingest(
    name: str, body: DocumentsRequest, state: State, ctx: Context, caller: MaybeCaller
) -> IngestResponse:
    """Classify and store a batch of documents (``id``, ``time``, ``text``, optional ``source``, ``topic``).

    All or nothing: one bad document refuses the batch with a 422 naming its index. An id stored
    before (by this route, a followed file or a folder) is a duplicate: stored and counted once,
    across restarts. Concurrent batches are classified together on the server.
    """
    ctx.texts = len(body.documents)
    # The key's rate first, as predict takes it: taken only at admission, after the monitor's name and
    # each document were checked, a key limited to 1/min could send 404s, 413s and 422s without limit.
    await _admit_read(state, caller)
    served = state.monitors.get(name)  # 404 naming the served monitors
    limit = state.settings.max_texts_per_request
    if len(body.documents) > limit:
        raise RequestLimitError(
            f"{len(body.documents)} documents in one request; the limit is max_texts_per_request={limit}: "
            "send them in several requests",
            status=413,
            code="too_many_documents",
        )
    try:
        docs = served.monitor.check_batch(body.documents)  # its limits: max_text_chars, max_future
    except DataError as exc:
        raise _invalid(exc, "invalid_document") from None
    # Each key's documents waiting or being classified are capped like predict's texts
    # (--max-in-flight), and wait in the key's own lane of the monitor's batcher: one key's stream of
    # batches queued without bound ahead of every other key's.
    holding = (
        state.in_flight.hold(caller.key_id, caller.name, len(docs))
        if caller is not None
        else contextlib.nullcontext()
    )
    with holding:
        if caller is not None:
            await run_in_threadpool(
                lambda: state.access.admit(caller, len(docs), request_id=ctx.request_id, rate=False)
            )
        result = await served.ingest(docs, lane=None if caller is None else caller.key_id)
    return IngestResponse(
        monitor=served.name,
        received=len(docs),
        stored=result.stored,
        duplicates=result.duplicates,
        alerts=_alerts_out(result.alerts),
        unwatched=result.unwatched,
    )


@router.get("/{name}/trend", response_model=TrendResponse, responses=READ_ERRORS)
async def get_trend(
    name: str,
    state: State,
    caller: MaybeCaller,
    topic: Topic = None,
    company: Company = None,
    start: From = None,
    to: To = None,
    bucket: Annotated[
        str, Query(pattern=NO_NUL, description="bucket length: 5m, 1h, 1d, 1w or seconds")
    ] = "1h",
) -> TrendResponse:
    """Documents, negative documents and negative share per bucket (UTC-aligned, empty ones
    included), for the whole stream or one topic and/or company, with that key's alerts.

    Without ``from``/``to`` the range is the stored documents' own; at most 5,000 buckets (without
    ``from``, the newest 5,000: one document dated 1970 does not make every such read a 422).
    """
    from tunelab.apps.monitor import trend

    await _admit_read(state, caller)  # before the name: a 404 counts against the rate too
    served = state.monitors.get(name)
    # Seconds as ASCII digits only: "²".isdigit() is True but int("²") raises, and a huge number
    # is left to trend() to refuse as a string.
    size: str | int = int(bucket) if re.fullmatch(r"[0-9]{1,9}", bucket) else bucket
    try:
        out = await state.monitors.read(
            lambda: trend(
                served.monitor.store,
                served.name,
                topic=topic,
                company=company,
                start=start,
                end=to,
                bucket=size,
                aliases=served.monitor.config.aliases,
            ),
            monitor=served.name,
        )
    except DataError as exc:
        raise _invalid(exc, "invalid_parameter") from None
    return TrendResponse.model_validate(out)


@router.get("/{name}/alerts", response_model=AlertList, responses=READ_ERRORS)
async def list_alerts(
    name: str,
    state: State,
    caller: MaybeCaller,
    start: From = None,
    to: To = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_ALERTS, description="at most this many (the oldest); page with after")
    ] = DEFAULT_ALERTS,
    after: Annotated[
        str | None,
        Query(pattern=NO_NUL, description="only alerts after this one (a page's last id): the next page"),
    ] = None,
    key: Annotated[
        str | None,
        Query(
            pattern=r"^(topic|company):[^\x00]{1,200}$",
            description="only this key's: topic:<name> or company:<name> (normalised)",
        ),
    ] = None,
) -> AlertList:
    """The monitor's alert episodes that started in ``[from, to)``, oldest first, at most ``limit``
    (for the next page, ``after`` = the last one's ``id``: alerts of one document share a start)."""
    from tunelab.apps.monitor import normalise_company

    await _admit_read(state, caller)  # before the name: a 404 counts against the rate too
    served = state.monitors.get(name)
    since, until = _time(start, "from"), _time(to, "to")
    if since is not None and until is not None and since >= until:
        raise _invalid(
            ValueError(f"from {since.isoformat()} is not before to {until.isoformat()}"), "invalid_parameter"
        )
    if key is not None and key.startswith("company:"):
        company = key.split(":", 1)[1]
        key = "company:" + (normalise_company(company, served.monitor.config.aliases) or company)
    store = served.monitor.store
    if after is not None and not await state.monitors.read(
        lambda: store.has_alert(served.name, after), monitor=served.name
    ):
        raise _invalid(
            ValueError(f"after: no alert {after!r} in monitor {served.name!r}"), "invalid_parameter"
        )
    alerts = await state.monitors.read(
        lambda: store.alerts(served.name, key=key, since=since, until=until, limit=limit, after=after),
        monitor=served.name,
    )
    return AlertList(monitor=served.name, alerts=_alerts_out(alerts))


async def _admit_read(state: Any, caller: Any) -> None:
    """The key's rate, first thing: a read counts against it (no texts: not its quota), as the
    writes do, so a key limited to a few requests a second must not read a large store without
    limit; the document route takes it here too, before its checks."""
    if caller is not None:
        await run_in_threadpool(lambda: state.access.admit_rate(caller))


def _time(value: str | None, field: str) -> datetime | None:
    from tunelab.apps.monitor import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise _invalid(ValueError(f"{field}: {exc}"), "invalid_parameter") from None
