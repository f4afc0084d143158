"""Turn every error into ``{"error": {"code", "message"}}`` with the right status.

Core code raises domain errors (``AccessError``, ``ModelNotServedError``, ``RequestLimitError``,
any ``TunelabError``); this is the one place they meet HTTP. Validation errors keep their field
paths: ``body.texts.2: ...``. Malformed JSON is a 400 with the parser's position, not a 422.

A message reaches the client only when it is about the request (a limit, a field, a key, a model
name). What is about the server stays in the server log, under the request id that the client
gets instead: a database error (its message names the database's user, host, port and name), and
an error raised by a model while it answers (it may name files). Anything else unexpected becomes
a 500 in ``ObserveMiddleware``, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from tunelab.errors import ConfigError, TunelabError
from tunelab.serve.context import request_context
from tunelab.serve.disconnect import CLIENT_CLOSED
from tunelab.serve.model_roots import ModelPathForbiddenError
from tunelab.serve.observe import ROUTE_SCOPE_KEY, allowed_methods
from tunelab.serve.registry import ModelNotServedError, ModelStateError
from tunelab.serve.request_limits import RequestLimitError

MAX_DETAILS = 20  # schema errors listed in a 422 (the message still counts them all)

log = logging.getLogger("tunelab.serve")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = extra.pop("headers", None)
    detail: dict[str, Any] = {"code": code, "message": message}
    detail.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


#: A location part longer than this is cut (a client's extra key can be of any length).
_PART_CHARS = 50


def location(loc: tuple[Any, ...] | list[Any]) -> str:
    """``body.items.3.fields`` for a validation error's location, on one line: a part that is not
    plain printable text (a client's extra key with a newline or U+2028 in it) is written escaped,
    and a long one is cut."""
    parts = []
    for part in loc:
        text = str(part)
        if not text.isprintable() or any(c.isspace() and c != " " for c in text):
            text = ascii(text)
        parts.append(text if len(text) <= _PART_CHARS else text[: _PART_CHARS - 3] + "...")
    return ".".join(parts)


async def _rate_refusal(request: Request) -> JSONResponse | None:
    """The key's rate, for a request refused before its route ran (a body that fails the schema):
    the route takes it first thing, which such a request never reaches, so a key could send them
    at any speed, each writing a usage row. None when the rate lets it through (or no key)."""
    from tunelab.serve.access import AccessError

    ctx = request_context(request)
    access = getattr(request.app.state.tunelab, "access", None)
    # Only where the route itself takes the rate (it declares a 429): others never answer one.
    responses = getattr(request.scope.get("route"), "responses", None) or {}
    if ctx.caller is None or access is None or not ({429, "429"} & set(responses)):
        return None
    try:
        await run_in_threadpool(access.admit_rate, ctx.caller)
    except AccessError as exc:
        return await _access(request, exc)
    return None


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    refused = await _rate_refusal(request)
    if refused is not None:
        return refused
    errors = list(exc.errors())
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        position = bad_json["loc"][-1] if bad_json.get("loc") else "?"
        reason = bad_json.get("ctx", {}).get("error", "JSON decode error")
        return error_response(400, "malformed_json", f"malformed JSON at character {position}: {reason}")
    content_type = request.headers.get("content-type", "").strip()
    if not _json_media_type(content_type) and any(
        tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in errors
    ):
        # e.g. curl -d without -H, requests' data=json.dumps(...) (no Content-Type at all) or
        # text/json: a body was sent but FastAPI never read it as JSON, so it is no schema problem.
        # (No body at all is the "missing" error: a 422 "Field required".)
        got = f"got {content_type!r}" if content_type else "no Content-Type sent"
        message = f"send the body as JSON with 'Content-Type: application/json' ({got})"
        return error_response(415, "unsupported_media_type", message)
    # The first MAX_DETAILS only: a body of 10,000 wrong items made a 1 MB answer of 10,000 errors.
    details = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors[:MAX_DETAILS]
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    message = f"{location(first['loc']) or 'request'}: {first['msg']}{more}"
    return error_response(422, "invalid_request", message, details=details)


def _json_media_type(content_type: str) -> bool:
    """``application/json`` or ``application/*+json`` (parameters and case aside): what FastAPI
    parses as JSON."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _access(request: Request, exc: Any) -> JSONResponse:
    ctx = request_context(request)
    if ctx.caller is None and exc.status in (401, 403):
        ctx.refusal = exc.code  # the key check refused it: counted by reason, not by model
    return JSONResponse(exc.to_body(), status_code=exc.status, headers=exc.headers() or None)


async def _not_served(request: Request, exc: ModelNotServedError) -> JSONResponse:
    return error_response(404, exc.code, str(exc))


async def _state(request: Request, exc: ModelStateError) -> JSONResponse:
    return error_response(409, exc.code, str(exc))


async def _limit(request: Request, exc: RequestLimitError) -> JSONResponse:
    return error_response(exc.status, exc.code, str(exc))


async def _forbidden_path(request: Request, exc: ModelPathForbiddenError) -> JSONResponse:
    return error_response(403, exc.code, str(exc))


async def _store(request: Request, exc: Exception) -> JSONResponse:
    from tunelab.serve.store import DuplicateKeyError, KeyNotFoundError

    if isinstance(exc, KeyNotFoundError):
        return error_response(404, "unknown_key", str(exc))
    if isinstance(exc, DuplicateKeyError):
        return error_response(409, "duplicate_key", str(exc))
    ctx = request_context(request)
    rid = ctx.request_id
    shared = getattr(request.app.state.tunelab, "store_error_log", None)
    if ctx.caller is None and shared is not None:
        # No authenticated caller (the key look-up itself failed, say): anyone can send these as
        # fast as they like, so one line per interval for all of them, not one each.
        shared.log(logging.ERROR, "requests", "database error (latest: request id %s): %s", rid, exc)
    else:
        log.error("database error (request id %s): %s", rid, exc)  # the connection string stays here
    # a monitor's own database named as such (its address stays in the log, as above)
    monitor = getattr(exc, "monitor", None)
    whose = f"the database of monitor {monitor!r}" if monitor else "the key and usage database"
    message = f"{whose} is unavailable; try again later (request id {rid})"
    return error_response(503, "store_unavailable", message)


def _model_failed(request: Request, exc: Exception) -> JSONResponse | None:
    """A 500 without the message for an error a model raised while it answered, else ``None``.

    The checks of a predict request raise their own types (limits, model not served, key); a
    ``TunelabError`` that escapes once a model version is in use came from the model's code.
    """
    ctx = request_context(request)
    if ctx.model is None or ctx.version is None:
        return None
    log.error("model %s@%s failed (request id %s)", ctx.model, ctx.version, ctx.request_id, exc_info=exc)
    return error_response(500, "internal_error", f"internal server error (request id {ctx.request_id})")


async def _ticket(request: Request, exc: Exception) -> JSONResponse:
    from tunelab.serve.store.support import TicketNotFoundError

    status = 404 if isinstance(exc, TicketNotFoundError) else 409
    return error_response(status, getattr(exc, "code", HTTP_CODES[status]), str(exc))


async def _config(request: Request, exc: ConfigError) -> JSONResponse:
    return _model_failed(request, exc) or error_response(422, "invalid_value", str(exc))


async def _tunelab(request: Request, exc: TunelabError) -> JSONResponse:
    return _model_failed(request, exc) or error_response(400, "bad_request", str(exc))


async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    code = getattr(exc, "code", None) or HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = getattr(exc, "headers", None)
    if exc.status_code == 404 and message == "Not Found":
        path = request.url.path
        found = request.scope.get(ROUTE_SCOPE_KEY)
        # The app does not redirect /predict/ to /predict (redirect_slashes=False: its Location
        # was built from the request's scheme, http:// behind a TLS proxy, and a 307 re-sends the
        # body there); the 404 names the path that has a route instead.
        slash = found is not None and found.redirect
        hint = f"without the trailing slash: {path.rstrip('/')}; " if slash else ""
        message = f"no route {request.method} {path} ({hint}see /docs)"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        # Every method the path is served with (RFC 9110): Starlette names only the first route that
        # matches the path, so PATCH /v1/keys said "Allow: POST" though GET /v1/keys is served too.
        allowed = allowed_methods(request.scope)
        if allowed:
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    elif exc.status_code == 400 and isinstance(exc.__cause__, ClientDisconnect):
        # The client left while sending its body: no JSON to blame (nobody reads this answer;
        # its usage row says 499, as when it leaves while the model runs).
        code, message = "client_closed", "the client closed the connection"
        return error_response(CLIENT_CLOSED, code, message)
    elif exc.status_code == 400 and message == "There was an error parsing the body":
        # FastAPI's answer for a body json.loads could not even start on: bytes that are not
        # UTF-8, or nesting past the parser's depth. Said as the malformed JSON it is.
        code = "malformed_json"
        message = "malformed JSON: the body is not UTF-8 text, or is nested too deeply; send UTF-8 JSON"
        cause = exc.__cause__
        if isinstance(cause, ValueError) and not isinstance(cause, UnicodeError) and "digits" in str(cause):
            # json.loads refuses an integer of over 4,300 digits (int's conversion limit) with a plain
            # ValueError: the body was valid UTF-8 and shallow, and the message sent users looking there
            message = "malformed JSON: a number in the body has more than 4,300 digits; send a shorter one"
    return error_response(exc.status_code, code, message, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    from tunelab.serve.access import AccessError
    from tunelab.serve.store import StoreError
    from tunelab.serve.store.support import TicketNotFoundError, TicketStateError

    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(AccessError, _access)
    app.add_exception_handler(ModelNotServedError, _not_served)  # type: ignore[arg-type]
    app.add_exception_handler(ModelStateError, _state)  # type: ignore[arg-type]
    app.add_exception_handler(RequestLimitError, _limit)  # type: ignore[arg-type]
    app.add_exception_handler(ModelPathForbiddenError, _forbidden_path)  # type: ignore[arg-type]
    app.add_exception_handler(StoreError, _store)
    app.add_exception_handler(TicketNotFoundError, _ticket)
    app.add_exception_handler(TicketStateError, _ticket)
    app.add_exception_handler(ConfigError, _config)  # type: ignore[arg-type]
    app.add_exception_handler(TunelabError, _tunelab)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http)  # type: ignore[arg-type]


__all__ = ["error_response", "install_error_handlers"]
