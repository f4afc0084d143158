"""What routes depend on, as ``Annotated`` dependencies: the server state, the request context,
and the caller behind the API key.

The access layer is blocking (it talks to the database), so every call into it goes through the
thread pool; the event loop keeps batching and answering meanwhile.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from tunelab.serve.context import RequestContext, request_context
from tunelab.serve.metrics import ServeMetrics
from tunelab.serve.observe import CALLER_SCOPE_KEY, REFUSAL_LOG_INTERVAL_S, RateLimitedLog, route_match
from tunelab.serve.registry import ModelRegistry
from tunelab.serve.settings import ServeSettings

REPORTS_AT_ONCE = 2  # /v1/usage aggregates running at once (see ServeState.reports)
READINESS_LOG_INTERVAL_S = 60.0  # at most one "database unreachable" line per this many seconds


@dataclass
class ServeState:
    """Everything one app instance owns; ``access`` is set when the lifespan opens the store."""

    settings: ServeSettings
    registry: ModelRegistry
    metrics: ServeMetrics = field(default_factory=ServeMetrics)
    store: Any = None  # tunelab.serve.store.Store
    access: Any = None  # tunelab.serve.access.AccessControl
    bots: Any = None  # tunelab.serve.bots.BotRegistry (support bots, ``--bot``)
    conversations: Any = None  # tunelab.serve.conversations.Conversations, once the store is open
    webhook: Any = None  # tunelab.serve.webhook.WebhookWorker with --handoff-webhook
    monitors: Any = None  # tunelab.serve.monitors.MonitorRegistry (sentiment monitors, ``--monitor``)
    recommenders: Any = None  # tunelab.serve.recommenders.RecommenderRegistry (``--recommend``)
    alert_webhook: Any = None  # tunelab.apps.monitor.webhook.AlertWebhook when a monitor has a URL
    in_flight: Any = None  # tunelab.serve.in_flight.InFlightTexts: each key's texts queued or running
    # Requests a forced stop (uvicorn's second Ctrl-C) cut off: each was answered 503 shutting_down
    # (observe.ObserveMiddleware); `tunelab serve` exits 130 and says how many when there were any.
    cut_off: int = 0
    running: int = 0  # requests inside the app now (observe.ObserveMiddleware), HTTP only
    # Usage reports (/v1/usage) running at once, all keys together: each holds a database connection
    # for its whole aggregate, and PostgreSQL's pool (4) is the one every key check, quota count and
    # usage row borrows from; reports past this wait in the event loop, holding nothing.
    reports: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(REPORTS_AT_ONCE))
    # Failed /readyz probes: an orchestrator probes every few seconds while the database is down.
    readiness_log: RateLimitedLog = field(
        default_factory=lambda: RateLimitedLog(
            logging.getLogger("tunelab.serve"), interval_s=READINESS_LOG_INTERVAL_S
        )
    )
    # Database errors of requests without an authenticated caller (error_handlers._store): while the
    # database is down, each request with a well-shaped key fails its key look-up, and anyone can
    # send those as fast as they like; the README promises such requests one line per 10 s.
    store_error_log: RateLimitedLog = field(
        default_factory=lambda: RateLimitedLog(
            logging.getLogger("tunelab.serve"), interval_s=REFUSAL_LOG_INTERVAL_S
        )
    )


# Dependencies are ``async`` even where they do not await: FastAPI runs plain functions in the
# thread pool, a needless thread hop per request.
async def get_state(request: Request) -> ServeState:
    return request.app.state.tunelab


async def get_context(request: Request) -> RequestContext:
    return request_context(request)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """``Authorization: Bearer <token>``, else ``X-API-Key: <token>``, else None."""
    from tunelab.serve.access import token_from_headers

    return token_from_headers(headers.get("authorization"), headers.get("x-api-key"))


State = Annotated[ServeState, Depends(get_state)]
Context = Annotated[RequestContext, Depends(get_context)]

# The two ways to send a key, declared as OpenAPI security schemes so that /docs has an Authorize
# button and clients (and the API fuzzer) know which headers carry credentials. auto_error=False:
# they never answer by themselves; the token is still read by ``bearer_token`` below, the same
# parser the middleware uses, so the 401/403 bodies and headers stay the access layer's.
bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="tl_<id>_<secret>",
    description="`Authorization: Bearer <token>`; create keys with `tunelab keys create`.",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="`X-API-Key: <token>`, for clients that cannot set Authorization.",
)
BearerHeader = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]
ApiKeyHeader = Annotated[str | None, Security(api_key_scheme)]


async def _authenticate(request: Request, state: ServeState, ctx: RequestContext) -> Any:
    ctx.auth_tried = True
    caller = request.scope.get(CALLER_SCOPE_KEY)  # KeyCheck's, before the body was read
    # A request with a body is checked again now that it has been read: a key revoked while its
    # body was still uploading (an upload may take as long as the client likes) was served, an
    # admin key's POST /v1/keys included. Without a body KeyCheck's look-up is this request's.
    if caller is None or _has_body(request):
        caller = await run_in_threadpool(state.access.authenticate, bearer_token(request.headers))
    ctx.caller = caller
    return caller


def _has_body(request: Request) -> bool:
    """The request sends a body (a declared length above 0, or a chunked one)."""
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length.strip() not in ("", "0"))


async def require_caller(
    request: Request, state: State, ctx: Context, _bearer: BearerHeader, _api_key: ApiKeyHeader
) -> Any:
    """The authenticated caller (401 without a valid key, 403 for a revoked one)."""
    return await _authenticate(request, state, ctx)


async def optional_caller(
    request: Request, state: State, ctx: Context, _bearer: BearerHeader, _api_key: ApiKeyHeader
) -> Any:
    """Like ``require_caller``, except that with ``--no-auth`` a request without a key passes (None)."""
    if not state.settings.require_keys and bearer_token(request.headers) is None:
        ctx.auth_tried = True
        return None
    return await _authenticate(request, state, ctx)


async def require_admin(
    request: Request, state: State, ctx: Context, _bearer: BearerHeader, _api_key: ApiKeyHeader
) -> Any:
    """An admin caller (403 admin_required otherwise); admin routes need a key even with --no-auth."""
    caller = await _authenticate(request, state, ctx)
    await run_in_threadpool(state.access.require_admin, caller)
    return caller


Caller = Annotated[Any, Depends(require_caller)]
MaybeCaller = Annotated[Any, Depends(optional_caller)]
Admin = Annotated[Any, Depends(require_admin)]

_KEY_DEPENDENCIES: dict[Any, str] = {
    require_caller: "required",
    require_admin: "required",
    optional_caller: "optional",
}


class KeyCheck:
    """Pure ASGI middleware: the key of a request whose route needs one, checked before the route
    reads (and parses) its body.

    FastAPI reads and parses a route's body before it resolves its dependencies, so a request
    without a valid key cost as much as its body (a 1 MB JSON body five times a small one) before
    its 401. Here a request the router will hand to such a route (``Caller``, ``MaybeCaller``,
    ``Admin``) has its key checked first: a refusal is answered by the app's own handler for the
    error (the same 401/403 body and headers, the same refusal count), its body unread; a valid
    key's caller goes on in the scope, where the route's dependency takes it instead of checking
    the key again. Inside ``BodySizeLimit``: a body declared over --max-body is still a 413 before
    anything else. ``--no-auth`` lets a request without a key through to ``MaybeCaller`` routes as
    before; a request the router answers itself (404, 405, a path with a trailing slash's 404) is
    left to it.
    """

    def __init__(self, app: ASGIApp, *, state: ServeState) -> None:
        self.app = app
        self.state = state
        self._needs: dict[int, str | None] = {}  # id(RouteEntry) -> what its route needs of a key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        access = self.state.access
        found = route_match(scope) if scope["type"] == "http" else None
        if access is None or found is None or not found.full or found.redirect:
            await self.app(scope, receive, send)
            return
        need = self._need(found.entry)
        token = bearer_token(Headers(scope=scope))
        if need is None or (need == "optional" and token is None and not self.state.settings.require_keys):
            await self.app(scope, receive, send)
            return
        try:
            caller = await run_in_threadpool(access.authenticate, token)
        except Exception as exc:
            request = Request(scope, receive)
            request_context(request).auth_tried = True  # its outcome is final, as in the route's
            handler = _handler_for(scope.get("app"), exc)
            if handler is None:
                raise  # unexpected: the middleware's 500, as from the route's dependency
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send)
            return
        scope[CALLER_SCOPE_KEY] = caller
        await self.app(scope, receive, send)

    def _need(self, entry: Any) -> str | None:
        """``required``, ``optional`` (``MaybeCaller``) or None: what ``entry``'s route needs of a key."""
        key = id(entry)
        if key not in self._needs:
            self._needs[key] = key_need(entry.dependant)
        return self._needs[key]


def key_need(dependant: Any) -> str | None:
    """What a route's dependencies need of a key: ``required`` if any needs one, else ``optional``
    if any takes one, else None."""
    found: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        if current is None:
            continue
        need = _KEY_DEPENDENCIES.get(getattr(current, "call", None))
        if need is not None:
            found.add(need)
        stack.extend(getattr(current, "dependencies", None) or ())
    return "required" if "required" in found else "optional" if found else None


def _handler_for(app: Any, exc: Exception) -> Any:
    """The app's exception handler for ``exc`` (by class, nearest first), as Starlette looks it up."""
    handlers = getattr(app, "exception_handlers", None) or {}
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


__all__ = [
    "Admin",
    "Caller",
    "Context",
    "KeyCheck",
    "MaybeCaller",
    "ServeState",
    "State",
    "api_key_scheme",
    "bearer_scheme",
    "bearer_token",
    "get_state",
]
