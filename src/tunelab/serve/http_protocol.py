"""The HTTP/1.1 protocol ``tunelab serve`` runs uvicorn with: bounded request heads, with a deadline.

uvicorn's default parser (httptools, with ``uvicorn[standard]``) buffers a request's line and headers
without limit, and neither parser times out a head that never ends: a client with no key sent ten
unfinished 40 MB headers and the server held 400 MB more until they hung up, and 300 half-sent heads
stayed open for good, each holding a socket. A request without a valid key must cost a constant.

h11 (uvicorn's other parser, as vLLM runs it for the same reason) caps the bytes of an unfinished head
(``h11_max_incomplete_event_size``: past it, uvicorn answers 400 and closes). No uvicorn option bounds
the time a head may take, so ``BoundedH11Protocol`` adds that: a connection whose request head is not
complete ``HEAD_TIMEOUT_S`` after its first byte (or after the connection opened) gets a 408 and is
closed. A request's body is read under the key's own limits (``--max-body-bytes``), after its key was
checked. Parsing in Python costs tens of microseconds a request, small beside a model's forward pass.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

#: The most bytes of a request line and headers buffered before they are complete: an API key, a
#: few proxies' headers and a long query fit many times over; past it the answer is a 400.
MAX_HEAD_BYTES = 64 * 1024

#: Seconds a request line and headers may take to arrive, counted from their first byte (a new
#: connection: from when it opened); then a 408 and the connection is closed.
HEAD_TIMEOUT_S = 30.0

_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 38\r\nconnection: close\r\n\r\nthe request head took too long to send"
)


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head (see the module docstring)."""

    head_timeout_s = HEAD_TIMEOUT_S

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm()  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of a head (armed once: later bytes do not extend it)
        super().data_received(data)
        self._disarm_once_head_is_in()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self._arm()  # a pipelined request's head, part of it already buffered
        self._disarm_once_head_is_in()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _disarm_once_head_is_in(self) -> None:
        if self.conn.their_state is not h11.IDLE:  # the head arrived (body, done, closed or error)
            self._disarm()

    def _arm(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.our_state is h11.IDLE:  # no answer of ours under way: a 408 can go first
            self.transport.write(_TIMED_OUT)
        self.transport.close()


#: ``uvicorn.run``'s and ``uvicorn.Config``'s options for this protocol.
UVICORN_OPTIONS: dict[str, Any] = {
    "http": BoundedH11Protocol,
    "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
}
