"""Server-side micro-batching: concurrent requests to one model version share forward passes.

A transformer forward on 32 short texts costs little more than on one, so under load the server
is fastest when it waits a few milliseconds and runs the texts of many requests together. Each
model version has one ``MicroBatcher``: requests put their texts in their client's lane (below); one
worker task takes the request whose turn it is, keeps gathering until ``max_batch`` texts or ``max_wait_ms``
after that first one, and runs tokenise + forward in a single dedicated thread (the event loop
never blocks, and one version never runs two forwards at once, which would only fight over the
same cores). Results and per-text token counts go back to each waiting request.

A batch that fails is run again one request at a time, so one request the model cannot take
(a text the tokenizer refuses, say) fails alone and never takes the others of its batch with it.
A batch of one request that fails is not run again: it fails that request only.
A text-pair model's requests carry ``pairs`` (the second text of each); a batch holds only one
kind (all with pairs or none), so it is one ``encode`` call.

Requests wait in one lane per API key, and batches take the lanes in turn (round-robin): a key
with many texts queued (a 256-text request is 8 batches) no longer holds another key's one-text
request behind all of them; that request runs in the next batch. Without keys (``--no-auth``,
the apps' own batchers) there is one lane, first come, first served. Hand-written: Ray Serve's
``@serve.batch`` takes requests from one ``asyncio.Queue`` in arrival order, with no notion of a client.

Adapters sharing one base (``tunelab.serve.adapters``) share one batcher: each request carries
its ``route`` (its adapter's predictor, which encodes and decodes it) and the batcher's predictor
runs the routed requests of a batch in one forward (``predict_routed``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


class RoutedPredictor(Protocol):
    """What the batcher needs to answer routed requests (a shared base, ``tunelab.serve.adapters``)."""

    def predict_routed(
        self, parts: list[tuple[Any, list[str], list[str] | None]], *, top_k: int, batch_size: int
    ) -> list[tuple[list[dict[str, Any]], list[int]]]: ...


class BatchPredictor(Protocol):
    """What the batcher needs from a ``tunelab.Predictor``."""

    def encode(self, texts: list[str], text_pairs: list[str] | None = None) -> Any: ...

    def predict_encoded(
        self, enc: Any, texts: list[str], *, top_k: int = 3, batch_size: int = 64
    ) -> list[dict[str, Any]]: ...


@dataclass
class BatchOutput:
    """One request's share of one or more batches, in its input order."""

    results: list[dict[str, Any]]
    tokens: list[int]


@dataclass
class _Pending:
    texts: list[str]
    top_k: int
    future: asyncio.Future[BatchOutput] = field(repr=False)
    pairs: list[str] | None = None  # the second text of each, for a text-pair model
    route: Any = None  # the predictor that encodes and decodes it, on a shared batcher
    observe: Callable[[int], None] | None = None  # its model version's batch-size metric


_NO_LANE = object()  # ``_served`` before the first request: equal to no lane key (None included)


class BatcherClosed(RuntimeError):
    """Raised to requests submitted after ``close()`` (the registry never lets that happen)."""


class MicroBatcher:
    """Groups concurrent ``submit`` calls into batches of at most ``max_batch`` texts.

    Args:
        predictor: encodes texts and predicts already encoded ones.
        max_batch: the most texts in one forward; a larger request is split into several.
        max_wait_ms: how long the first request of a batch waits for company.
        on_batch: called (from the event loop) with the text count of each forward that succeeded,
            for metrics: a failed batch is not counted, the retries of its requests that succeed are.
    """

    def __init__(
        self,
        predictor: BatchPredictor,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int], None] | None = None,
        name: str = "model",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch {max_batch}: use 1 or more")
        self.predictor = predictor
        self.max_batch = max_batch
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.on_batch = on_batch
        self.name = name
        # One FIFO lane per key; the lane first in the dict gives the next request, then goes last.
        self._lanes: OrderedDict[Hashable, deque[_Pending]] = OrderedDict()
        self._served: Hashable = _NO_LANE  # the lane of the request taken last
        self._arrived = asyncio.Event()  # set by submit and close: the worker has something to look at
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{name}")
        self._worker: asyncio.Task[None] | None = None
        self._closed = False  # no new requests; the worker stops once the lanes are empty

    def start(self) -> None:
        """Start the worker task (needs a running event loop); idempotent."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def submit(
        self,
        texts: list[str],
        *,
        top_k: int = 3,
        pairs: list[str] | None = None,
        route: Any = None,
        observe: Callable[[int], None] | None = None,
        lane: Hashable = None,
    ) -> BatchOutput:
        """Predict ``texts`` (with ``pairs``, their second texts, for a text-pair model).

        Waits for the batch (or batches) they end up in. On a shared batcher ``route`` is the
        request's adapter predictor and ``observe`` its version's batch-size metric. ``lane`` is
        the client's (its key id): requests of one lane run in order, lanes take turns.
        """
        if self._closed:
            raise BatcherClosed(f"{self.name}: batcher is closed")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs: give one pair text per text")
        if not texts:  # nothing to run: a lane left empty would stop the worker (``_head``)
            return BatchOutput(results=[], tokens=[])
        self.start()
        loop = asyncio.get_running_loop()
        queue = self._lanes.setdefault(lane, deque())
        parts = []
        for start in range(0, len(texts), self.max_batch):
            end = start + self.max_batch
            part = _Pending(
                texts[start:end],
                top_k,
                loop.create_future(),
                None if pairs is None else pairs[start:end],
                route,
                observe,
            )
            queue.append(part)
            parts.append(part)
        self._arrived.set()
        futures = [p.future for p in parts]
        try:
            outputs = await asyncio.gather(*futures)
        except BaseException:
            # One part failed (or the request was cancelled): the request is answered now, so its
            # other parts must not run on behind it, outside the key's in-flight cap. A cancelled
            # part is skipped by the worker; one already running finishes unread.
            for future in futures:
                if not future.done():
                    future.cancel()
            raise
        return BatchOutput(
            results=[r for out in outputs for r in out.results],
            tokens=[t for out in outputs for t in out.tokens],
        )

    async def close(self) -> None:
        """Stop after the requests already queued are answered, then free the thread."""
        if self._closed:
            return
        self._closed = True
        self._arrived.set()
        try:
            if self._worker is not None:
                await self._worker
        except asyncio.CancelledError:
            # the worker cancelled by the event loop's teardown (a server's forced stop): it has
            # stopped, which is what was waited for; a cancellation of this close itself goes on
            if not self._worker.cancelled():
                raise
        finally:
            self._executor.shutdown(wait=False)

    def _head(self) -> _Pending | None:
        """The request whose turn it is (the first lane's oldest), without taking it.

        The lane served last goes behind the others only now, not when it was served: a lane that
        arrived while that batch ran (another key's one text) then comes before it, as it should.
        """
        if len(self._lanes) > 1 and next(iter(self._lanes)) == self._served:
            self._lanes.move_to_end(self._served)
        for lane in self._lanes.values():
            return lane[0]
        return None

    def _take(self) -> None:
        """Take the head request; its lane, once empty, is dropped (a key's next request opens a new one)."""
        key, lane = next(iter(self._lanes.items()))
        lane.popleft()
        self._served = key
        if not lane:
            del self._lanes[key]

    async def _wait_for_arrival(self, timeout: float | None) -> bool:
        """Wait until ``submit`` or ``close`` signals; False when ``timeout`` passed first."""
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _gather(self) -> list[_Pending] | None:
        """The next batch: the request whose turn it is, then whatever fits before the deadline.

        Lanes take turns inside a batch too. ``None`` once closed with nothing left to answer.
        """
        while (first := self._head()) is None:
            if self._closed:
                return None
            await self._wait_for_arrival(None)
        self._take()
        batch, size = [first], len(first.texts)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            item = self._head()
            if item is None:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0 or not await self._wait_for_arrival(remaining):
                    break
                continue
            if size + len(item.texts) > self.max_batch or (item.pairs is None) != (first.pairs is None):
                break  # no room, or the other kind: it stays first in line and starts the next batch
            self._take()
            batch.append(item)
            size += len(item.texts)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            if batch is None:
                return
            live = [p for p in batch if not p.future.done()]  # a cancelled client needs no answer
            if not live:
                continue
            try:
                await self._answer(live)
            except Exception as exc:
                if len(live) == 1:
                    _fail(live[0], exc)
                    continue
                # One request may have broken the batch: run each alone, so only that one fails.
                log.warning(
                    "%s: a batch of %d requests failed (%s); running each request alone",
                    self.name,
                    len(live),
                    type(exc).__name__,
                )
                for p in live:
                    if p.future.done():
                        continue
                    try:
                        await self._answer([p])
                    except Exception as alone:
                        _fail(p, alone)

    async def _answer(self, live: list[_Pending]) -> None:
        """Run ``live`` as one forward and give each request its share; raises if the forward does."""
        top_k = max(p.top_k for p in live)
        loop = asyncio.get_running_loop()
        if live[0].route is None:
            texts = [t for p in live for t in p.texts]
            pairs = None if live[0].pairs is None else [t for p in live for t in p.pairs or ()]
            results, tokens = await loop.run_in_executor(self._executor, self._infer, texts, pairs, top_k)
            shares, offset = [], 0
            for p in live:
                n = len(p.texts)
                shares.append((results[offset : offset + n], tokens[offset : offset + n]))
                offset += n
        else:
            parts = [(p.route, p.texts, p.pairs) for p in live]
            shares = await loop.run_in_executor(self._executor, self._infer_routed, parts, top_k)
        count = sum(len(p.texts) for p in live)
        if self.on_batch is not None:  # only a forward that answered: a text is counted once
            self.on_batch(count)
        for observe in {id(p.observe): p.observe for p in live if p.observe is not None}.values():
            observe(count)  # each version in a shared forward: the size of the forward it ran in
        for p, (results, tokens) in zip(live, shares, strict=True):
            if not p.future.done():
                p.future.set_result(BatchOutput([_trim(r, p.top_k) for r in results], list(tokens)))

    def _infer(
        self, texts: list[str], pairs: list[str] | None, top_k: int
    ) -> tuple[list[dict[str, Any]], list[int]]:
        # Single-text predictors need not take a second argument.
        enc = self.predictor.encode(texts) if pairs is None else self.predictor.encode(texts, pairs)
        results = self.predictor.predict_encoded(enc, texts, top_k=top_k, batch_size=self.max_batch)
        # One count per text (a text split into windows is counted once); an encoding without
        # ``text_lengths`` (a stand-in predictor's) has one example per text.
        return results, list(getattr(enc, "text_lengths", enc.lengths))

    def _infer_routed(
        self, parts: list[tuple[Any, list[str], list[str] | None]], top_k: int
    ) -> list[tuple[list[dict[str, Any]], list[int]]]:
        return self.predictor.predict_routed(parts, top_k=top_k, batch_size=self.max_batch)


def _fail(pending: _Pending, exc: BaseException) -> None:
    if not pending.future.done():
        pending.future.set_exception(exc)


def _trim(result: dict[str, Any], top_k: int) -> dict[str, Any]:
    """The batch ran with the largest ``top_k`` asked; the ranking is the same, so cut it."""
    if len(result.get("top_k", ())) <= top_k:
        return result
    return {**result, "top_k": result["top_k"][:top_k]}


__all__ = ["BatchOutput", "BatchPredictor", "BatcherClosed", "MicroBatcher", "RoutedPredictor"]
