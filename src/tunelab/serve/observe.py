"""Pure ASGI middleware around every request: request id, usage record, metrics, access log, 500s.

The usage row of a predict request is written when the response *starts*, before its first byte
leaves, whatever the status (400 to 500): once a client has its answer, its row is committed.
If the row cannot be written the answer is withheld and replaced by a 503, so no prediction is
ever served unmetered. Unexpected exceptions become a JSON 500 naming the request id (also in
``X-Request-ID``) and are logged, never shown to the client.

A request without a valid key costs a constant, whatever it sends: it writes no usage row (rows
are billing, and each takes the database's write lock), adds no metric series (it is counted in
``tunelab_refused_requests`` by reason, never by the model name in its URL) and its log line is
rate-limited. Only anonymous requests that ``--no-auth`` lets through are metered without a key.
A usage row names the model only when it is served; any other name asked for is stored as
``OTHER`` (``_other``, as in the metrics), so callers cannot grow the usage table's model names.
A support bot's message (``/v1/apps/support/{bot}/messages``) is metered the same way, as one text,
its row naming the app (``support``) and, in ``model``, the bot (a served one, else ``OTHER``); a
reply the route stores has its 200 row committed by the route in the same transaction (so a
hand-off ticket exists exactly when its message is billed), and this middleware writes no other; a
monitor's documents (``/v1/apps/monitor/{name}/documents``) likewise, one text per document, the
row naming the app (``monitor``) and the monitor; a recommender's rankings, items and events
(``/v1/apps/recommend/{name}/users/{id}``, ``.../items``, ``.../events``), one unit per ranking, item
or recorded event, the row naming the app (``recommend``) and the recommender. A successful app
request may answer 201 (an added item): every 2xx is billed, as 200 is. Which requests are metered
is decided from the route their path leads to (``RouteTable``: the router's own regexes, in its
order, so a name or user id the route accepts, line breaks included, is one the meter sees), by
the route's full template (``METERED_ROUTES``).

A 2xx answer of a request that changed state (a monitor's stored documents, a recommender's added
items or recorded events) is sent even when its usage row cannot be written: a 503 "try again"
there made the client's retry store its documents twice, record its events twice or get a 409 for
the item it had added (and never be billed). The failure is logged as an ERROR naming the request
id, the key and the app's name, so that the request can be billed by hand; its units still count
against the key's quota in this process (``AccessControl.record``'s ``sent_without_row``). (A
support message's row commits with its turn and ticket, so it never reaches this; predict and
rankings change nothing, so their answer is still withheld.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunelab.serve.context import SCOPE_KEY, RequestContext
from tunelab.serve.masking import Unmasked
from tunelab.serve.metrics import OTHER

log = logging.getLogger("tunelab.serve")
access_log = logging.getLogger("tunelab.serve.access")

# The metered routes, by the full path template they are served at: the app that their usage row
# and metrics name (None: a model's predict) and the path parameter naming the model, bot, monitor
# or recommender. Whether a request is metered is decided by matching its path with the app's own
# routes (their regexes, in the router's order), never with patterns of our own: a pattern of ours
# ("users/.+", where "." stops at a newline) once let rankings for a user id with a line break
# through unbilled, their quota reservations never settled.
METERED_ROUTES: dict[str, tuple[str | None, str]] = {
    "/v1/models/{name}/predict": (None, "name"),
    "/v1/apps/support/{bot}/messages": ("support", "bot"),
    "/v1/apps/monitor/{name}/documents": ("monitor", "name"),
    "/v1/apps/recommend/{name}/users/{user_id}": ("recommend", "name"),
    "/v1/apps/recommend/{name}/items": ("recommend", "name"),
    "/v1/apps/recommend/{name}/events": ("recommend", "name"),
}
# Metered routes whose 2xx answer to a POST says that something was stored: never withheld (see above).
CHANGES_STATE_ROUTES = frozenset(
    {
        "/v1/apps/monitor/{name}/documents",
        "/v1/apps/recommend/{name}/items",
        "/v1/apps/recommend/{name}/events",
    }
)
ROUTE_SCOPE_KEY = "tunelab.route"  # the RouteMatch found for the request before routing (or None)
CALLER_SCOPE_KEY = "tunelab.caller"  # the caller whose key was checked before the body was read
APP_REPLY_KINDS = ("answer", "knowledge", "handoff")
RANKING_KINDS = ("ranked", "fallback")  # a recommender's ranking, as the rank route sets ctx.outcome
QUIET_PATHS = ("/healthz", "/readyz", "/metrics")  # polled often: logged at debug level only
REFUSAL_LOG_INTERVAL_S = 10.0  # at most one log line per this many seconds for keyless requests


class RateLimitedLog:
    """Warnings about events that can come in floods, at most one line per ``interval_s``.

    The first event is logged at once; later ones are counted (per kind) and summed up in the next
    line, so a flood (keyless requests, readiness probes while the database is down) costs a few
    lines, not one per event. Thread-safe: the counts are shared by the event loop and its threads.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = REFUSAL_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.interval_s, self.clock = logger, interval_s, clock
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._last = -float("inf")

    def _due(self, kind: str) -> tuple[str, str] | None:
        """Count one ``kind`` event; if a line is due, ``(" in the last Ns" or "", "kind=n, ...")``."""
        with self._lock:
            self._counts[kind] += 1
            now = self.clock()
            if now - self._last < self.interval_s:
                return None
            since = "" if self._last == -float("inf") else f" in the last {now - self._last:.0f}s"
            counts = ", ".join(f"{k}={n}" for k, n in sorted(self._counts.items()))
            self._counts.clear()
            self._last = now
        return since, counts

    def warning(self, kind: str, message: str, *args: object) -> None:
        """Log ``message % args`` if a line is due, with the events of each kind it stands for."""
        self.log(logging.WARNING, kind, message, *args)

    def log(self, level: int, kind: str, message: str, *args: object) -> None:
        """``warning`` at ``level`` (a database outage is an ERROR, but still one line per interval)."""
        due = self._due(kind)
        if due is None:
            return
        since, counts = due
        self.logger.log(
            level, f"{message} (%s%s; at most one such line per %.0fs)", *args, counts, since, self.interval_s
        )


def loggable_path(path: str) -> str:
    """A request's path for one log line: cut to 200 characters and, when it holds a control
    character or a line break (``%0a`` arrives decoded), written escaped: a path with a newline
    started a forged line of the server's log, keyless requests included."""
    path = path[:200]
    if path.isprintable() and not any(c.isspace() and c != " " for c in path):
        return path
    return ascii(path)


class RefusalLog(RateLimitedLog):
    """Logs requests refused for want of a valid key, and those answered before their key was read
    (an unknown route, a wrong method, a body too large or compressed: the key, if any, is unknown
    then), at most one line per ``interval_s``."""

    what = "refused requests without a valid key, or answered before the key was read"

    def refused(self, reason: str, method: str, path: str, status: int, request_id: str) -> None:
        due = self._due(reason)
        if due is None:
            return
        since, counts = due
        self.logger.warning(
            "%s%s: %s; latest %s %s %d id=%s (at most one such line per %.0fs)",
            self.what,
            since,
            counts,
            method,
            loggable_path(path),
            status,
            request_id,
            self.interval_s,
        )


class LookupFailureLog(RefusalLog):
    """Logs requests whose key could not be looked up (a 503 ``store_unavailable``): no refusal of
    the key, which may well be valid, so a line of their own, at most one per ``interval_s``."""

    what = "requests whose key could not be checked (the key and usage database is unavailable)"


@dataclass(frozen=True, eq=False)
class RouteEntry:
    """One route of the app as its router sees it: the full path template it is served at (with
    ``/v1``), the regex the router matches paths with, its methods (None: any) and its dependant."""

    route: Any  # what the router puts in scope["route"] (FastAPI's original route)
    template: str
    regex: re.Pattern[str]
    methods: frozenset[str] | None
    dependant: Any = None


@dataclass(frozen=True)
class RouteMatch:
    """The route a request's path leads to, found before routing, as the router will find it."""

    entry: RouteEntry
    full: bool  # the method is one the route answers (False: the router answers 405)
    params: dict[str, str]  # the path parameters as the route's regex matched them
    redirect: bool = False  # only the path without its trailing slash matched: the router's 404


class RouteTable:
    """The app's HTTP routes in the order its router tries them, each with its full template.

    Built once per app (routes are declared before the first request) from FastAPI's
    ``iter_route_contexts``, so the regexes are the router's own: what this finds for a path is
    the route that answers it (first full match, else first partial one, as ``Router`` does).
    """

    _tables: ClassVar[weakref.WeakKeyDictionary[Any, RouteTable]] = weakref.WeakKeyDictionary()

    def __init__(self, app: Any) -> None:
        self.entries = _route_entries(app)
        self.by_route: dict[int, list[RouteEntry]] = {}
        for entry in self.entries:
            self.by_route.setdefault(id(entry.route), []).append(entry)

    @classmethod
    def of(cls, app: Any) -> RouteTable | None:
        """The table of ``app`` (made on first use); None for what is not a Starlette app."""
        if app is None or not hasattr(app, "routes"):
            return None
        table = cls._tables.get(app)
        if table is None:
            table = cls._tables[app] = cls(app)
        return table

    def match(self, path: str, method: str) -> RouteMatch | None:
        """The route ``path`` leads to: the first that matches with ``method``, else the first that
        matches at all (the router's 405), else the one the path leads to without its trailing
        slash (``redirect``: the router answers 404, as the app does not redirect), else None."""
        found = self._match(path, method)
        if found is None and path != "/" and path.endswith("/"):
            found = self._match(path.rstrip("/"), method)
            if found is not None:
                found = RouteMatch(found.entry, found.full, found.params, redirect=True)
        return found

    def _match(self, path: str, method: str) -> RouteMatch | None:
        partial = None
        for entry in self.entries:
            m = entry.regex.match(path)
            if m is None:
                continue
            if entry.methods is None or method in entry.methods:
                return RouteMatch(entry, True, m.groupdict())
            partial = partial or RouteMatch(entry, False, m.groupdict())
        return partial


def route_match(scope: Scope) -> RouteMatch | None:
    """The route the request of ``scope`` leads to, found once and kept in the scope, so the
    middlewares that act before routing (metering, the key check) agree with the router."""
    if ROUTE_SCOPE_KEY not in scope:
        table = RouteTable.of(scope.get("app"))
        scope[ROUTE_SCOPE_KEY] = table.match(_route_path(scope), scope["method"]) if table else None
    return scope[ROUTE_SCOPE_KEY]


def allowed_methods(scope: Scope) -> list[str]:
    """Every method some route of the app serves the request's path with, sorted: a 405's ``Allow``
    (the router names only the first route whose path matches, and two routes may share a path)."""
    table = RouteTable.of(scope.get("app"))
    path = _route_path(scope)
    methods: set[str] = set()
    for entry in table.entries if table is not None else ():
        if entry.methods and entry.regex.match(path):
            methods |= entry.methods
    return sorted(methods)


def _route_path(scope: Scope) -> str:
    """The path the router matches: ``scope["path"]`` less ``root_path`` (as Starlette's own)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and (path == root or path[len(root)] == "/"):
        return path[len(root) :]
    return path


class ObserveMiddleware:
    """Outermost tunelab middleware; ``state`` is the app's ``ServeState``."""

    def __init__(self, app: ASGIApp, *, state: Any) -> None:
        self.app = app
        self.state = state
        self.refusal_log = RefusalLog(access_log, interval_s=REFUSAL_LOG_INTERVAL_S)
        self.lookup_failure_log = LookupFailureLog(access_log, interval_s=REFUSAL_LOG_INTERVAL_S)
        self._key_needs: dict[int, str | None] = {}  # id(RouteEntry) -> what its route needs of a key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext()
        scope[SCOPE_KEY] = ctx
        found = route_match(scope)
        # A path that only its form without the trailing slash routes is the router's 404 (the app
        # does not redirect): no request to the route, so nothing to meter.
        routed = found is not None and not found.redirect
        metered = METERED_ROUTES.get(found.entry.template) if found is not None and routed else None
        match = metered is not None
        if found is not None and metered is not None:
            ctx.app, param = metered
            ctx.model = found.params.get(param)  # scope["path"] is decoded already: as the router reads it
        status = 0
        replaced = False  # the app's answer was swapped for a 503 (usage could not be recorded)

        async def send_wrapper(message: Message) -> None:
            nonlocal status, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = ctx.request_id
                if match and not await self._record(ctx, status, scope):
                    if self._changed_state(scope, status):
                        self._unbilled(ctx, scope, status)  # the real answer goes out
                        await send(message)
                        return
                    replaced = True
                    status = 503
                    body = _error("usage_unavailable", "usage could not be recorded; try again", ctx)
                    await JSONResponse(body, 503, {"X-Request-ID": ctx.request_id})(scope, receive, send)
                    return
            await send(message)

        self.state.metrics.in_flight.inc()
        self.state.running += 1
        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            # uvicorn's stop cancels the requests still running when it gives up waiting for them
            # (a second Ctrl-C, or the 30 s graceful wait run out; nothing else cancels a request
            # task): each reached uvicorn as "Exception in ASGI application", a traceback in the
            # log, a plain-text 500 to its client and no usage row. Answered here with the service's
            # JSON error instead, metered as any 503; the task then ends quietly.
            if status:
                raise  # the response had started: nothing else can be sent
            self.state.cut_off += 1
            log.warning(
                "request %s %s cut off by the server's stop: answered 503 (request id %s)",
                scope["method"],
                scope["path"],
                ctx.request_id,
            )
            said = "the server was stopped before answering; send the request again"
            body = _error("shutting_down", said, ctx)
            await JSONResponse(body, 503)(scope, receive, send_wrapper)
        except Exception:
            log.exception(
                "request %s %s failed (request id %s)", scope["method"], scope["path"], ctx.request_id
            )
            if status:
                raise  # the response had started; uvicorn closes the connection
            body = _error("internal_error", "internal server error", ctx)
            await JSONResponse(body, 500)(scope, receive, send_wrapper)
        finally:
            self.state.running -= 1
            self.state.metrics.in_flight.dec()
            self._observe(ctx, scope, status or 500)

    async def _record(self, ctx: RequestContext, status: int, scope: Scope) -> bool:
        """Write the usage row of a predict request; False if the store failed."""
        access = self.state.access
        if access is None or ctx.usage_recorded:
            return True  # none kept, or the route committed it with what it stored
        if 300 <= status < 400:  # a redirect (/predict/ -> /predict): the request it leads to is billed
            return True
        try:
            if ctx.caller is None and not ctx.auth_tried:
                # The key the key check accepted before the body was read, else a look-up now.
                ctx.caller = scope.get(CALLER_SCOPE_KEY) or await run_in_threadpool(
                    _caller_if_valid, access, scope
                )
                if ctx.caller is not None and 400 <= status < 500 and status not in (401, 403, 429):
                    # Refused before the key was read (malformed JSON, a wrong method, a body over
                    # --max-body): it still counts against the key's rate, as the README promises,
                    # or a key at 1/min could send them at any speed. The answer has gone already.
                    await run_in_threadpool(_take_rate_quietly, access, ctx.caller)
            if self._without_a_valid_key(ctx, scope):
                return True  # never authenticated: no billing row (counted as a refusal instead)
            await run_in_threadpool(
                access.record,
                caller=ctx.caller,
                model=self._model_labels(ctx)[0],  # never a caller's arbitrary name: OTHER
                version=ctx.version,
                texts=ctx.texts,
                tokens=ctx.tokens if 200 <= status < 300 else 0,
                status=status,
                latency_ms=round(ctx.elapsed() * 1000, 3),
                request_id=ctx.request_id,
                app=ctx.app,
                # sent even without its row (see _changed_state): its units count against the
                # quota all the same, or a key could store without limit while rows fail
                sent_without_row=self._changed_state(scope, status),
            )
        except Exception:
            log.exception("usage record failed (request id %s)", ctx.request_id)
            return False
        return True

    def _route_label(self, scope: Scope) -> str:
        """The matched route's full path template (``/v1/models/{name}/predict``), else ``unmatched``.

        FastAPI from 0.16x keeps an included router's routes as they were declared, so
        ``scope["route"].path`` is the inner router's path (``/models/{name}/predict``, no ``/v1``);
        the full one is found in the app's ``RouteTable``. A request answered before routing (a key
        refused by the key check, a body over --max-body) is labelled with the route it was for.
        Templates only, never a request's raw path, so the label's values stay as few as the routes.
        """
        route = scope.get("route")
        if route is None:
            found = scope.get(ROUTE_SCOPE_KEY)
            return found.entry.template if found is not None and not found.redirect else "unmatched"
        own = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
        table = RouteTable.of(scope.get("app"))
        candidates = table.by_route.get(id(route)) if table is not None else None
        if not candidates:
            return own  # not a route of the app's table (not a FastAPI app)
        if len(candidates) > 1:  # one route included under two prefixes: the one this path matched
            path = _route_path(scope)
            for entry in candidates:
                if entry.regex.match(path):
                    return entry.template
        return candidates[0].template

    @staticmethod
    def _changed_state(scope: Scope, status: int) -> bool:
        """The request stored something: a POST of documents, items or events answered 2xx."""
        found = scope.get(ROUTE_SCOPE_KEY)
        return (
            200 <= status < 300
            and scope["method"] == "POST"
            and found is not None
            and found.entry.template in CHANGES_STATE_ROUTES
        )

    def _unbilled(self, ctx: RequestContext, scope: Scope, status: int) -> None:
        """One ERROR line with what billing the request by hand needs (its row was not written)."""
        caller = ctx.caller
        log.error(
            "usage row not written for request %s, which changed state (%s %s answered %d): its answer "
            "was sent, since a retry would apply it twice; bill it by hand: key %s (id %s), app %s, "
            "name %s, units %d",
            ctx.request_id,
            scope["method"],
            loggable_path(scope["path"]),
            status,
            Unmasked(ctx.key_name),  # to bill by: the key's real name, never "<email>"
            caller.key_id if caller is not None else "-",
            ctx.app,
            self._model_labels(ctx)[0],
            ctx.texts,
        )

    def _keyless(self, scope: Scope) -> bool:
        """The request's route takes no key at all (``/readyz``, ``/docs``): its failures are no
        refusals of a key. Routes the path leads to only partly (a 405) or by redirect are not."""
        found = scope.get(ROUTE_SCOPE_KEY)
        if found is None or not found.full or found.redirect:
            return False
        if id(found.entry) not in self._key_needs:
            from tunelab.serve.deps import key_need  # deps imports this module

            self._key_needs[id(found.entry)] = key_need(found.entry.dependant)
        return self._key_needs[id(found.entry)] is None

    def _without_a_valid_key(self, ctx: RequestContext, scope: Scope) -> bool:
        """No key was accepted, and the request needed one: also under ``--no-auth``, on a route
        that still takes a key (``/v1/keys``, ``/v1/usage``) and refused it. Those 401s were neither
        counted as refusals nor kept to one log line per interval: anyone who could reach the port
        wrote a log line per request."""
        return ctx.caller is None and (ctx.refusal is not None or not self._anonymous(scope))

    def _anonymous(self, scope: Scope) -> bool:
        """A request ``--no-auth`` lets through: no key required and none sent."""
        from tunelab.serve.deps import bearer_token

        return not self.state.settings.require_keys and bearer_token(Headers(scope=scope)) is None

    def _model_labels(self, ctx: RequestContext) -> tuple[str, str]:
        """(model, version) label values: a served name (and the version that answered), else OTHER.

        For an app's request, a served bot's, monitor's or recommender's name (they have no
        versions), else OTHER.
        """
        if ctx.app is not None:
            served = {"monitor": self.state.monitors, "recommend": self.state.recommenders}.get(
                ctx.app, self.state.bots
            )
            return (ctx.model, "-") if served is not None and ctx.model in served else (OTHER, "-")
        if ctx.model is None or not self.state.registry.versions(ctx.model):
            return OTHER, "-"
        return ctx.model, ctx.version or "-"  # ctx.version is only ever set from a served version

    def _observe(self, ctx: RequestContext, scope: Scope, status: int) -> None:
        seconds = ctx.elapsed()
        self.state.metrics.http.labels(self._route_label(scope), str(status)).inc()
        unauthenticated = self._without_a_valid_key(ctx, scope)
        # A keyless route (/readyz, /healthz, /docs) refuses no key: its 503 while the database is
        # down was logged as "refused requests without a valid key".
        refusable = unauthenticated and not self._keyless(scope)
        # A redirect, or the 404 of a path with a trailing slash that has a route without it
        # (/predict/), is answered before any key is read: it is no refusal (a valid key's was
        # counted as "unauthenticated"), and its client is told the path to send instead.
        found = scope.get(ROUTE_SCOPE_KEY)
        redirect = 300 <= status < 400 or (found is not None and found.redirect)
        if refusable and ctx.auth_tried and ctx.refusal is None and status == 503:
            # The key look-up itself failed (the store's 503): the key may be valid, so no refusal
            # of it, but still counted by reason alone, as a request without a valid key costs.
            self.state.metrics.observe_refusal("store_unavailable")
            self.lookup_failure_log.refused(
                "store_unavailable", scope["method"], scope["path"], status, ctx.request_id
            )
            return
        if refusable and not redirect and (ctx.refusal is not None or ctx.model is not None):
            reason = ctx.refusal or "unauthenticated"
            self.state.metrics.observe_refusal(reason)
            self.refusal_log.refused(reason, scope["method"], scope["path"], status, ctx.request_id)
            return
        if refusable and status >= 400 and not redirect:
            # Answered before the key was read (an unknown route, a bad body, a wrong method): the
            # same one line per interval as the refusals above, not one line per request.
            self.refusal_log.refused(
                f"status {status}", scope["method"], scope["path"], status, ctx.request_id
            )
            return
        if redirect:
            pass  # no predict or app series: it reached no route (a redirect's is observed where it leads)
        elif ctx.app is not None:
            bot, _ = self._model_labels(ctx)
            kind = ctx.outcome if ctx.outcome in APP_REPLY_KINDS else None
            self.state.metrics.observe_app(
                app=ctx.app, bot=bot, key=ctx.key_name, status=status, seconds=seconds, kind=kind
            )
            if ctx.app == "recommend" and ctx.outcome in RANKING_KINDS and 200 <= status < 300:
                # only a ranking that was delivered (and billed): the route cannot know, since a
                # usage row that fails after it answered turns its answer into a 503
                fallback = str(ctx.outcome == "fallback").lower()
                self.state.metrics.recommend_rankings.labels(bot, fallback).inc()
        elif ctx.model is not None:
            model, version = self._model_labels(ctx)
            self.state.metrics.observe_predict(
                model=model,
                version=version,
                key=ctx.key_name,
                status=status,
                seconds=seconds,
                texts=ctx.texts,
                tokens=ctx.tokens,
            )
        # Keyless successes (/docs, /openapi.json, the probes) at debug level: anyone can send them
        # as fast as they like, and the README promises them no more than one line per interval.
        level = logging.DEBUG if scope["path"] in QUIET_PATHS or unauthenticated else logging.INFO
        access_log.log(
            level,
            "%s %s %d %.1fms model=%s version=%s key=%s texts=%d id=%s",
            scope["method"],
            loggable_path(scope["path"]),
            status,
            seconds * 1000,
            # the name comes from the (decoded) path too: escaped like it
            loggable_path(f"{ctx.app}/{ctx.model}" if ctx.app else ctx.model or "-"),
            ctx.version or "-",
            Unmasked(ctx.key_name),  # the operator's name for the key, as /metrics shows it
            ctx.texts,
            ctx.request_id,
        )


def _route_entries(app: Any) -> list[RouteEntry]:
    """Each HTTP route of ``app`` in the router's order, with the full path template it is served
    at, from FastAPI's ``iter_route_contexts`` where it has one (older FastAPI copies included
    routes with their prefix, so the app's own list has the full paths)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        contexts: list[tuple[Any, Any]] = [(route, route) for route in getattr(app, "routes", None) or []]
    else:
        contexts = [(c.original_route, c) for c in iter_route_contexts(getattr(app, "routes", None) or [])]
    out = []
    for route, context in contexts:
        if isinstance(route, WebSocketRoute):
            continue  # never matches an HTTP request
        regex = getattr(context, "path_regex", None)
        template = getattr(context, "path_format", None) or getattr(context, "path", None)
        if regex is None or not template:
            continue
        methods = getattr(context, "methods", None)
        out.append(
            RouteEntry(
                route=route,
                template=template,
                regex=regex,
                methods=frozenset(methods) if methods else None,
                dependant=getattr(context, "dependant", None),
            )
        )
    return out


def _take_rate_quietly(access: Any, caller: Any) -> None:
    from tunelab.serve.access import AccessError

    with contextlib.suppress(AccessError):
        access.admit_rate(caller)


def _caller_if_valid(access: Any, scope: Scope) -> Any:
    """Attribute a request the route never authenticated (e.g. a 413) to its key, if valid."""
    from tunelab.serve.deps import bearer_token

    token = bearer_token(Headers(scope=scope))
    if token is None:
        return None
    try:
        return access.authenticate(token)
    except Exception:
        return None


def _error(code: str, message: str, ctx: RequestContext) -> dict[str, Any]:
    return {"error": {"code": code, "message": f"{message} (request id {ctx.request_id})"}}


__all__ = [
    "CALLER_SCOPE_KEY",
    "METERED_ROUTES",
    "ROUTE_SCOPE_KEY",
    "LookupFailureLog",
    "ObserveMiddleware",
    "RateLimitedLog",
    "RefusalLog",
    "RouteMatch",
    "RouteTable",
    "allowed_methods",
    "route_match",
]
