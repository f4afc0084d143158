"""``/v1/apps/recommend``: the recommenders a server ranks for (``tunelab serve --recommend recs/<name>``).

* ``GET /v1/apps/recommend/{name}/users/{user_id}?k=10&exclude_seen=true``: the user's ranking,
  each item with the user's items that matched it most; an unknown user gets popular and fresh
  items with ``fallback: true``. Billed as one unit.
* ``POST /v1/apps/recommend/{name}/items``: add one item (``item_id``, ``fields``) or a batch
  (``items``), rankable at once (cold start): 201. An id the recommender has is a 409, never an
  overwrite: other users' events and reasons point at that id and its text, and a client whose
  first try timed out learns from the 409 that it landed. Billed per item.
* ``POST /v1/apps/recommend/{name}/events``: record interactions; each event gets its own result
  (an unknown item or a bad field rejects that event only). Billed per recorded event.
* ``GET /v1/apps/recommend``: the served recommenders and their info (not billed; the key's rate
  applies).

Checks go in the order of cost, like predict: body size (as declared), key (``KeyCheck``, before the
body is read), JSON, schema, the key's rate, then recommender, counts and sizes, the key's in-flight
cap (``--max-in-flight``: a ranking counts as one, an item or a recorded event as one each), quota,
then the recommender itself in its own threads (never on the event loop); a ranking whose client
leaves is cancelled (a 499). Usage rows name the app (``recommend``) and the recommender. Every key
sees the same recommenders: they have no owner.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from tunelab.errors import DataError
from tunelab.serve.context import RequestContext
from tunelab.serve.deps import Context, MaybeCaller, ServeState, State
from tunelab.serve.disconnect import unless_client_leaves
from tunelab.serve.error_handlers import location
from tunelab.serve.recommend_schemas import (
    ID_SCHEMA,
    MAX_K,
    EventIn,
    EventResult,
    EventsRecorded,
    EventsRequest,
    ItemsAdded,
    ItemsRequest,
    RankedItemOut,
    RankingOut,
    RecommenderInfo,
    RecommenderList,
    id_problem,
)
from tunelab.serve.recommenders import ItemConflictError, ItemRejectedError
from tunelab.serve.request_limits import RequestLimitError
from tunelab.serve.responses import AUTH, JSON_BODY, error_responses

router = APIRouter(prefix="/apps/recommend", tags=["recommend"])

RANK_ERRORS = error_responses(
    *AUTH,
    404,
    422,
    429,
    s404="unknown recommender",
    s422=f"k outside 1 to {MAX_K} or over the catalog's size, or a user id that is blank, over 200 "
    "characters or has a NUL",
    s503="the database is unreachable, or usage could not be recorded (nothing was billed)",
)
ITEM_ERRORS = error_responses(
    *AUTH,
    *JSON_BODY,
    404,
    409,
    429,
    s404="unknown recommender",
    s409="an item id the recommender already has (nothing of the batch is added)",
    s413="body over the server's --max-body, or more items than --max-texts",
    s422="a bad id or field, text over --max-chars, or an item whose text is empty (named by its index)",
    s503="the database is unreachable, or usage could not be recorded (nothing was billed)",
)
EVENT_ERRORS = error_responses(
    *AUTH,
    *JSON_BODY,
    404,
    429,
    s404="unknown recommender",
    s413="body over the server's --max-body, or more events than --max-texts",
    s422="the body is not {events: [objects]} (a bad event is rejected in its own result instead)",
    s503="the database is unreachable, or usage could not be recorded (nothing was billed)",
)

# What any key sees of a recommender's info; admin keys see all of it.
PUBLIC_INFO = frozenset(
    ("name", "n_items", "n_users", "n_added_items", "n_recorded_events", "built", "search", "ranker", "cf")
)

UserId = Annotated[
    str, Path(description="the user's id (an unknown user gets the fallback)", json_schema_extra=ID_SCHEMA)
]


def _invalid(message: str, code: str = "invalid_request") -> RequestLimitError:
    return RequestLimitError(message, status=422, code=code)


def _too_many(n: int, what: str, limit: int) -> RequestLimitError:
    return RequestLimitError(
        f"{n} {what} in one request; the limit is max_texts_per_request={limit}: "
        "send them in several requests",
        status=413,
        code=f"too_many_{what}",
    )


async def _admit_rate(state: ServeState, caller: Any) -> None:
    """The key's rate, first thing in each metered route, as predict takes it: taken only in
    ``_admit``, after the name and the body were checked, a key limited to 1/min could send 404s,
    413s and 422s without limit, each writing a usage row."""
    if caller is not None:
        await run_in_threadpool(state.access.admit_rate, caller)


async def _admit(state: ServeState, ctx: RequestContext, caller: Any, units: int) -> None:
    """Quota for ``units`` (rankings, items or events), like predict's texts (the rate was taken
    by ``_admit_rate``, so also a batch whose every event was refused counted against it)."""
    if caller is not None:
        await run_in_threadpool(
            lambda: state.access.admit(caller, units, request_id=ctx.request_id, rate=False)
        )


def _holding(state: ServeState, caller: Any, units: int) -> contextlib.AbstractContextManager[Any]:
    """The key's ``units`` counted in flight (429 past ``--max-in-flight``), as predict, support and
    monitor count theirs: the recommender's calls queued in its thread pool without limit, so one
    key's burst of rankings, items or events waited ahead of every other key's."""
    if caller is None or not units:  # no key (--no-auth), or nothing for the recommender to do
        return contextlib.nullcontext()
    return state.in_flight.hold(caller.key_id, caller.name, units)


@router.get("", response_model=RecommenderList, responses=error_responses(*AUTH, 429))
async def recommend_info(state: State, caller: MaybeCaller) -> RecommenderList:
    """The recommenders this server ranks for, with their info (counts, build time, search, ranker);
    admin keys also see the folder, the config and the rest."""
    # The key's rate, as on every app route: the listing asks each recommender for its info
    await _admit_rate(state, caller)
    admin = bool(getattr(caller, "admin", False))
    out = []
    for served in state.recommenders.all():
        info = await served.info()
        if not admin:  # the rest (folder, config, text model) names paths on the server
            info = {k: v for k, v in info.items() if k in PUBLIC_INFO}
        out.append(
            RecommenderInfo(
                name=served.name,
                source=served.source if admin else None,
                loaded_at=served.loaded_at,
                info=_jsonable(info),
            )
        )
    return RecommenderList(recommenders=out)


class _AnyPath(Convertor[str]):
    """Starlette's ``path`` (".*"), newlines included: a user id holding one matched no route, so a
    request without a key got "404 no route" before the key check instead of 401."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", _AnyPath())


@router.get("/{name}/users/{user_id:anypath}", response_model=RankingOut, responses=RANK_ERRORS)
async def rank(
    request: Request,
    name: str,
    user_id: UserId,
    state: State,
    ctx: Context,
    caller: MaybeCaller,
    k: Annotated[int, Query(ge=1, le=MAX_K, description=f"how many items (1 to {MAX_K})")] = 10,
    exclude_seen: Annotated[bool, Query(description="leave out the items the user engaged with")] = True,
) -> RankingOut:
    """The user's top ``k`` items, best first, each with the user's items that matched it most.

    A user the recommender has never seen gets popular and fresh items, with ``fallback: true``
    and the reason. Events recorded for the user show in the next ranking, without retraining.
    """
    ctx.texts = 1
    await _admit_rate(state, caller)
    served = state.recommenders.get(name)
    problem = id_problem(user_id)
    if problem:
        raise _invalid(f"user_id {problem}", "invalid_parameter")
    user_id = user_id.strip()  # as events store it
    with _holding(state, caller, 1):
        await _admit(state, ctx, caller, 1)
        try:
            # A ranking only reads: one whose client left is dropped from the recommender's queue
            # (a 499, not billed), as predict drops its texts. Writes below are never cancelled: one
            # that landed after a 499 would be unbilled, and its retry a 409.
            ranking = await unless_client_leaves(
                request.receive, served.rank(user_id, k=k, exclude_seen=exclude_seen)
            )
        except DataError as exc:
            raise _invalid(str(exc), "invalid_parameter") from None
    fallback = bool(ranking.fallback)
    # tunelab_recommend_rankings_total is counted by ObserveMiddleware once the answer goes out:
    # counted here, a ranking whose usage row then failed (a 503, never delivered) counted too
    ctx.outcome = "fallback" if fallback else "ranked"
    return RankingOut(
        recommender=served.name,
        user_id=str(ranking.user_id),
        items=[
            RankedItemOut(
                item_id=str(item.item_id),
                score=float(item.score),
                text=str(item.text),
                reasons=[str(r) for r in item.reasons],
            )
            for item in ranking.items
        ],
        fallback=fallback,
        fallback_reason=ranking.fallback_reason,
    )


@router.post(
    "/{name}/items",
    response_model=ItemsAdded,
    status_code=201,
    responses=ITEM_ERRORS,  # type: ignore[arg-type]
)
async def add_items(
    name: str, body: ItemsRequest, state: State, ctx: Context, caller: MaybeCaller
) -> ItemsAdded:
    """Add one item (``item_id``, ``fields``) or a batch (``items``): rankable at once, from its text.

    Ids must be new (one the recommender has, or one repeated in the batch, adds nothing: 409 or
    422). An item whose text comes out empty is a 422 naming its index. A batch is added whole or
    not at all.
    """
    items = body.all()
    ctx.texts = len(items)
    await _admit_rate(state, caller)
    served = state.recommenders.get(name)
    settings = state.settings
    if len(items) > settings.max_texts_per_request:
        raise _too_many(len(items), "items", settings.max_texts_per_request)
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.item_id in seen:
            raise _invalid(f"items[{i}]: item_id {item.item_id!r} is repeated in the batch", "invalid_item")
        seen.add(item.item_id)
        if item.chars() > settings.max_chars_per_text:
            raise RequestLimitError(
                f"items[{i}] ({item.item_id!r}) has {item.chars():,} characters of text; the limit is "
                f"max_chars_per_text={settings.max_chars_per_text}",
                status=422,
                code="text_too_long",
            )
    with _holding(state, caller, len(items)):
        await _admit(state, ctx, caller, len(items))
        try:
            await served.add_items([(item.item_id, dict(item.fields)) for item in items])
        except ItemConflictError as exc:
            raise RequestLimitError(str(exc), status=409, code="item_exists") from None
        except ItemRejectedError as exc:
            raise _invalid(str(exc), "invalid_item") from None
    state.metrics.recommend_items.labels(served.name).inc(len(items))
    return ItemsAdded(recommender=served.name, added=[item.item_id for item in items])


@router.post("/{name}/events", response_model=EventsRecorded, responses=EVENT_ERRORS)  # type: ignore[arg-type]
async def record_events(
    name: str, body: EventsRequest, state: State, ctx: Context, caller: MaybeCaller
) -> EventsRecorded:
    """Record interactions (``user_id``, ``item_id``, optional ``time``, ``rating``, ``event``).

    Each event is checked and recorded on its own and gets its own result: one with a bad field
    or an item the recommender does not have is ``rejected`` (with a code and a one-line
    message), the others are ``recorded``. The users' next rankings reflect them. Only recorded
    events are billed.
    """
    await _admit_rate(state, caller)
    served = state.recommenders.get(name)
    settings = state.settings
    if len(body.events) > settings.max_texts_per_request:
        raise _too_many(len(body.events), "events", settings.max_texts_per_request)
    results: list[EventResult | None] = [None] * len(body.events)
    valid: list[tuple[int, dict[str, Any]]] = []
    for i, raw in enumerate(body.events):
        try:
            event = EventIn.model_validate(raw)
        except ValidationError as exc:
            results[i] = EventResult(index=i, status="rejected", code="invalid_event", message=_first(exc, i))
            continue
        valid.append((i, event.model_dump()))
    with _holding(state, caller, len(valid)):
        await _admit(state, ctx, caller, len(valid))
        outcomes = await served.record_events([e for _, e in valid]) if valid else []
    for (i, _), outcome in zip(valid, outcomes, strict=True):
        message = None if outcome.message is None else f"events[{i}]: {outcome.message}"
        results[i] = EventResult(index=i, status=outcome.status, code=outcome.code, message=message)
    done = [r for r in results if r is not None]
    recorded = sum(r.status == "recorded" for r in done)
    ctx.texts = recorded  # billed: rejected events cost nothing
    counter = state.metrics.recommend_events
    for r in done:
        counter.labels(served.name, r.code or "recorded").inc()
    return EventsRecorded(
        recommender=served.name,
        received=len(done),
        recorded=recorded,
        rejected=len(done) - recorded,
        results=done,
    )


def _first(exc: ValidationError, index: int) -> str:
    """``events[3].item_id: Field required`` (the first problem, one line)."""
    errors = exc.errors()
    first = errors[0]
    where = location(first.get("loc", ()))
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return " ".join(f"events[{index}]{'.' + where if where else ''}: {msg}{more}".splitlines())


def _jsonable(value: Any) -> Any:
    """The recommender's info as plain JSON (numpy scalars, paths and dates turned into JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)
