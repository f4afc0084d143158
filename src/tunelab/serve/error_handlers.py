"""Turn every error into ``{"error": {"code", "message"}}`` with the right status.

Core code raises domain errors (``AccessError``, ``ModelNotServedError``, ``RequestLimitError``,
any ``TunelabError``); this is the one place they meet HTTP. Validation errors keep their field
paths: ``body.texts.2: ...``. Malformed JSON is a 400 with the parser's position, not a 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tunelab.errors import ConfigError, TunelabError
from tunelab.serve.context import request_context
from tunelab.serve.registry import ModelNotServedError, ModelStateError
from tunelab.serve.request_limits import RequestLimitError

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


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        position = bad_json["loc"][-1] if bad_json.get("loc") else "?"
        reason = bad_json.get("ctx", {}).get("error", "JSON decode error")
        return error_response(400, "malformed_json", f"malformed JSON at character {position}: {reason}")
    content_type = request.headers.get("content-type", "")
    if (
        content_type
        and "json" not in content_type
        and any(tuple(e.get("loc", ())) == ("body",) for e in errors)
    ):
        # e.g. curl -d without -H: the body was never read as JSON, so it is not a schema problem.
        message = f"send the body as JSON with 'Content-Type: application/json' (got {content_type!r})"
        return error_response(415, "unsupported_media_type", message)
    details = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    message = f"{_location(first['loc']) or 'request'}: {first['msg']}{more}"
    return error_response(422, "invalid_request", message, details=details)


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


async def _store(request: Request, exc: Exception) -> JSONResponse:
    from tunelab.serve.store import DuplicateKeyError, KeyNotFoundError

    if isinstance(exc, KeyNotFoundError):
        return error_response(404, "unknown_key", str(exc))
    if isinstance(exc, DuplicateKeyError):
        return error_response(409, "duplicate_key", str(exc))
    return error_response(503, "store_unavailable", str(exc))


async def _config(request: Request, exc: ConfigError) -> JSONResponse:
    return error_response(422, "invalid_value", str(exc))


async def _tunelab(request: Request, exc: TunelabError) -> JSONResponse:
    return error_response(400, "bad_request", str(exc))


async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    code = getattr(exc, "code", None) or HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path} (see /docs)"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path} (see /docs)"
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    from tunelab.serve.access import AccessError
    from tunelab.serve.store import StoreError

    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(AccessError, _access)
    app.add_exception_handler(ModelNotServedError, _not_served)  # type: ignore[arg-type]
    app.add_exception_handler(ModelStateError, _state)  # type: ignore[arg-type]
    app.add_exception_handler(RequestLimitError, _limit)  # type: ignore[arg-type]
    app.add_exception_handler(StoreError, _store)
    app.add_exception_handler(ConfigError, _config)  # type: ignore[arg-type]
    app.add_exception_handler(TunelabError, _tunelab)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http)  # type: ignore[arg-type]


__all__ = ["error_response", "install_error_handlers"]
