"""The outbox worker's own life cycle (tunelab.serve.webhook.OutboxWorker), on an in-memory outbox."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime

from tunelab.serve.webhook import OutboxWorker, Outgoing


class MemoryOutbox(OutboxWorker):
    """One item; recording its delivery takes a while (a slow database), as a real store can."""

    def __init__(self, record_s: float) -> None:
        super().__init__(
            "http://receiver.invalid/hook",
            secret=None,
            timeout_s=1.0,
            backoff_s=60.0,
            max_backoff_s=60.0,
            max_attempts=None,
            poll_s=0.05,
            post=self._post,
        )
        self.record_s = record_s
        self.waiting = [Outgoing("item-1", 1, self.url or "", {"n": 1})]
        self.posted = threading.Event()
        self.recorded: list[str] = []

    def _post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
        self.posted.set()
        return 200

    def lease(self, now: datetime, limit: int) -> list[Outgoing]:
        taken, self.waiting = self.waiting[:limit], self.waiting[limit:]
        return taken

    def delivered(self, key: str, now: datetime) -> None:
        time.sleep(self.record_s)
        self.recorded.append(key)

    def failed(self, key: str, *, error: str, retry_at: datetime | None, now: datetime) -> None:
        raise AssertionError(f"the stand-in receiver never fails ({error})")


def test_closing_while_a_delivery_is_recorded_waits_for_the_record() -> None:
    # Closed just after the POST succeeded: the delivery must be recorded before close returns,
    # or the store closes under it and the item is sent again after the restart.
    async def scenario() -> MemoryOutbox:
        worker = MemoryOutbox(record_s=0.3)
        worker.start()
        while not worker.posted.is_set():
            await asyncio.sleep(0.005)
        await worker.close()
        return worker

    worker = asyncio.run(scenario())
    assert worker.recorded == ["item-1"]


def test_a_closed_worker_starts_again_and_delivers_what_waits() -> None:
    async def scenario() -> MemoryOutbox:
        worker = MemoryOutbox(record_s=0.0)
        worker.waiting = []
        worker.start()
        await worker.close()
        worker.waiting = [Outgoing("item-2", 1, "http://receiver.invalid/hook", {"n": 2})]
        worker.start()
        while not worker.recorded:
            await asyncio.sleep(0.01)
        await worker.close()
        return worker

    assert asyncio.run(scenario()).recorded == ["item-2"]
