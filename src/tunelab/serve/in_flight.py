"""A cap on each key's texts in flight, so one client's big requests cannot fill the batch queue.

A key's rate counts requests, not texts: a key sending 64-text requests from 16 threads kept ~1,000
texts queued, and while the batcher served first come, first served, another key's 1-text request
waited two seconds behind them (12 ms when idle). The batcher now takes the keys' lanes in turn, so
that wait is one batch; the cap still bounds the memory and work one key can queue. Each key may have at most
``limit`` texts queued or running; past that a request is a 429 with Retry-After, and a request
with nothing of its key in flight always goes through (one request of any allowed size). Counted
in the event loop, so no lock; an entry is dropped at zero, so memory follows the keys in flight.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tunelab.serve.access import AccessError

RETRY_AFTER_S = 1.0


class InFlightTexts:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def held_total(self) -> int:
        """Texts in flight over all keys (the entries left: one per key with texts in flight)."""
        return sum(self._held.values())

    @contextmanager
    def hold(self, key_id: str, key_name: str, texts: int) -> Iterator[None]:
        """Count ``texts`` as in flight for the key while the block runs, or raise a 429."""
        now = self._held.get(key_id, 0)
        if now and now + texts > self.limit:
            raise AccessError(
                429,
                "too_many_in_flight",
                f"key {key_name!r} has {now} texts waiting or running (at most {self.limit}, "
                "--max-in-flight); retry when they are answered",
                retry_after=RETRY_AFTER_S,
            )
        self._held[key_id] = now + texts
        try:
            yield
        finally:
            left = self._held[key_id] - texts
            if left:
                self._held[key_id] = left
            else:
                del self._held[key_id]
