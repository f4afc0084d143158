"""Size limits on what a client may send: body bytes, texts per request, characters per text.

The body limit is pure ASGI middleware so it holds for every route and never buffers more than
the limit: a ``Content-Length`` over it is refused before a byte is read, and a chunked body is
counted as it streams in. A body sent compressed (a ``Content-Encoding`` other than ``identity``)
is refused there too, with a 415: nothing here decompresses, and gzip bytes read as JSON were a
misleading 400 "not UTF-8" while ``br`` on a plain body passed as if it meant nothing. The
per-text limits depend on the server's settings, so the predict route checks them after the
schema (messages name the setting, its value and the offending text).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunelab.errors import TunelabError


class RequestLimitError(TunelabError):
    """A request over one of the server's limits (413 for counts, 422 for a single text)."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def check_texts(
    texts: Sequence[str] | Sequence[tuple[str, str]],
    *,
    max_texts: int,
    max_chars: int,
    field: str = "texts",
) -> None:
    """Refuse too many texts (413) or a text too long (422), naming the limit and the text.

    ``texts`` may be pairs (``field="pairs"``): a pair counts as one text, and each of its two
    texts is held to ``max_chars``.
    """
    if len(texts) > max_texts:
        raise RequestLimitError(
            f"{len(texts)} {field} in one request; the limit is max_texts_per_request={max_texts}: "
            "send them in several requests",
            status=413,
            code="too_many_texts",
        )
    for i, item in enumerate(texts):
        parts = (
            [(f"{field}[{i}]", item)]
            if isinstance(item, str)
            else [(f"{field}[{i}][{j}]", text) for j, text in enumerate(item)]
        )
        for where, text in parts:
            if len(text) > max_chars:
                raise RequestLimitError(
                    f"{where} has {len(text)} characters; the limit is max_chars_per_text={max_chars}",
                    status=422,
                    code="text_too_long",
                )


class InputKindError(RequestLimitError):
    """Single texts sent to a text-pair model, or pairs to a single-text model (HTTP 422)."""


def check_input_kind(model: str, pair_column: str | None, *, has_pairs: bool) -> None:
    """Refuse a request whose field (``texts`` or ``pairs``) is not what the model was trained on."""
    if pair_column and not has_pairs:
        raise InputKindError(
            f"model {model!r} was trained on text pairs (data.text_pair_column={pair_column!r}): "
            'send "pairs": [[text, text_pair], ...] instead of "texts"',
            status=422,
            code="pairs_required",
        )
    if not pair_column and has_pairs:
        raise InputKindError(
            f'model {model!r} classifies single texts: send "texts": [...] instead of "pairs"',
            status=422,
            code="texts_required",
        )


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` mid-stream; an HTTPException so FastAPI passes it on untouched."""

    code = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over max_body_bytes={limit} bytes; send less per request")


class BodySizeLimit:
    """Pure ASGI middleware: at most ``max_bytes`` of request body, else 413 naming the limit; a
    ``Content-Encoding`` other than ``identity``, a 415 naming it."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        encoding = _content_encoding(scope)
        if encoding is not None:
            message = f"Content-Encoding {encoding!r} is not accepted; send the body uncompressed"
            await _refuse(scope, receive, send, 415, "unsupported_media_type", message)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = BodyTooLarge(self.max_bytes)
        await _refuse(scope, receive, send, 413, error.code, error.detail)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
    body = {"error": {"code": code, "message": message}}
    # Connection: close, since the rest of the body is left unread.
    await JSONResponse(body, status_code=status, headers={"Connection": "close"})(scope, receive, send)


def _content_encoding(scope: Scope) -> str | None:
    """The request's ``Content-Encoding`` when it says the body is encoded (anything but ``identity``,
    in any of the header's lines), cut to 40 characters for the message; None when it does not."""
    for name, value in scope.get("headers", ()):
        if name != b"content-encoding":
            continue
        text = value.decode("latin-1")
        if any(part.strip().lower() not in ("", "identity") for part in text.split(",")):
            text = text.strip()
            return text if len(text) <= 40 else text[:37] + "..."
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


__all__ = [
    "BodySizeLimit",
    "BodyTooLarge",
    "InputKindError",
    "RequestLimitError",
    "check_input_kind",
    "check_texts",
]
