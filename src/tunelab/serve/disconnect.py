"""Stop working for a client that has gone.

Under uvicorn a client that closes its connection (a timeout on its side) does not cancel the
route: its texts still went through the model, and its usage row said 200 and counted against its
quota for an answer nobody received; under overload the queue filled with such work. Written by
hand: Starlette offers ``Request.is_disconnected()`` (a poll), not a wait to race the work against.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from tunelab.serve.request_limits import RequestLimitError

T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's status for a request whose client closed the connection


async def _gone(receive: Any) -> None:
    """Return once the client disconnects. The body was read already, so the next ASGI message is
    ``http.disconnect`` (uvicorn sends it when the client goes, or after the response is sent)."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


async def unless_client_leaves(receive: Any, work: Awaitable[T]) -> T:
    """``await work``, or cancel it and raise a 499 ``RequestLimitError`` if the client leaves first.

    Cancelling ``work`` cancels the batcher's futures of this request, so parts not yet run are
    skipped (``MicroBatcher._run`` drops a done future) and the usage row is a 499, never billed.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_gone(receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this handler itself cancelled: take the work with it
        task.cancel()
        # retrieved when it ends, so asyncio never reports "Task exception was never retrieved"
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise
    finally:
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise RequestLimitError("the client closed the connection", status=CLIENT_CLOSED, code="client_closed")
