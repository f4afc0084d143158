"""The error answers each operation declares in the OpenAPI schema (``responses=`` of the routes).

Every status an operation can answer is listed, so that ``/docs`` is a complete contract and the
API fuzzer (``tests/e2e/test_fuzz.py``) can check each answer against it: an undeclared status,
or a body that is not ``ErrorBody``, is a failure. 500 is never declared: it is always a bug.

    @router.get("/thing/{name}", responses=error_responses(*AUTH, 404, 422))
"""

from __future__ import annotations

from typing import Any

from tunelab.serve.schemas import ErrorBody

DESCRIPTIONS = {
    400: "malformed JSON, or a request the server cannot act on",
    401: "missing or invalid API key",
    403: "revoked key, or an admin operation called without an admin key",
    404: "unknown model, version or key",
    409: "conflicts with the current state (the active version, a key name in use)",
    413: "body over the server's --max-body, or more texts than --max-texts",
    415: "body not sent as JSON (send Content-Type: application/json), or sent compressed (Content-Encoding)",
    422: "invalid body or parameters; `details` lists each field",
    429: "rate limit or quota reached (see Retry-After)",
    503: "the key and usage database is unreachable, or usage could not be recorded; try again",
}

HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "always `Bearer`",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "whole seconds until a retry can pass",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}

AUTH = (401, 403, 503)  # any operation that reads the key (the key lookup needs the database)
JSON_BODY = (400, 413, 415, 422)  # any operation with a JSON body


def error_responses(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """``{status: {"model": ErrorBody, "description": ...}}`` for ``statuses``, sorted.

    ``described`` overrides a description for one operation: ``error_responses(404, s404="...")``.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        entry: dict[str, Any] = {
            "model": ErrorBody,
            "description": described.get(f"s{status}", DESCRIPTIONS[status]),
        }
        if status in HEADERS:
            entry["headers"] = HEADERS[status]
        out[status] = entry
    return out


# What any operation can answer before its route runs, whatever it reads: the body-size limit and
# the Content-Encoding check are middleware around every route (GET /healthz with a large body is
# a 413 too). ``create_app`` declares these for every operation; an operation's own declaration of
# the same status (JSON_BODY's, with its own description) is kept.
EVERY_OPERATION = error_responses(
    413,
    415,
    s413="body over the server's --max-body",
    s415="body sent compressed (a Content-Encoding other than identity): send it uncompressed",
)

__all__ = ["AUTH", "DESCRIPTIONS", "EVERY_OPERATION", "JSON_BODY", "error_responses"]
