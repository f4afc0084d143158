"""The per-request record that the middleware opens and the routes fill in.

It lives in the ASGI scope, so the middleware that answers for metrics, usage and the access log
sees what the route learnt (model version, texts, tokens, caller) even when the route failed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

SCOPE_KEY = "tunelab.context"


@dataclass
class RequestContext:
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    model: str | None = None  # set from the path for predict requests (a bot's name for app messages)
    app: str | None = None  # "support", "monitor" or "recommend": an app's metered route (like predict)
    outcome: str | None = None  # what an app answered: a reply's kind (answer, ...), a ranking's (fallback)
    version: str | None = None
    texts: int = 0
    tokens: int = 0
    caller: Any = None  # tunelab.serve.access.Caller once authenticated
    auth_tried: bool = False  # the route ran authentication (its outcome is final)
    refusal: str | None = None  # the key check's refusal code (missing_key, invalid_key, revoked_key)
    usage_recorded: bool = False  # the route committed the usage row itself (a support message's)

    @property
    def key_name(self) -> str:
        return self.caller.name if self.caller is not None else "-"

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def request_context(request: Request) -> RequestContext:
    """The context the middleware put in the scope (a fresh one when called outside it, in tests)."""
    ctx = request.scope.get(SCOPE_KEY)
    if ctx is None:
        ctx = request.scope[SCOPE_KEY] = RequestContext()
    return ctx


__all__ = ["SCOPE_KEY", "RequestContext", "request_context"]
