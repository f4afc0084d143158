"""What routes depend on, as ``Annotated`` dependencies: the server state, the request context,
and the caller behind the API key.

The access layer is blocking (it talks to the database), so every call into it goes through the
thread pool; the event loop keeps batching and answering meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from tunelab.serve.context import RequestContext, request_context
from tunelab.serve.metrics import ServeMetrics
from tunelab.serve.observe import REFUSAL_LOG_INTERVAL_S, RateLimitedLog
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
    caller = await run_in_threadpool(state.access.authenticate, bearer_token(request.headers))
    ctx.caller = caller
    return caller


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

__all__ = [
    "Admin",
    "Caller",
    "Context",
    "MaybeCaller",
    "ServeState",
    "State",
    "api_key_scheme",
    "bearer_scheme",
    "bearer_token",
    "get_state",
]
