"""The recommenders a server ranks for (``tunelab serve --recommend recs/<name>``).

A ``Recommender`` (``tunelab.apps.recommend``) is loaded before the app is built (the CLI loads it
before binding the port) and is never imported here: anything with ``rank``, ``add_items``,
``record_event``, ``items``, ``users`` and ``info`` serves.

Its calls are CPU-bound (encoding an item's text, scoring every candidate) and may touch its
SQLite file, so none runs on the event loop. Each recommender has a small thread pool of its own
rather than Starlette's shared one: that pool also runs every key check, usage write and
``/readyz`` database ping, so a burst of slow rankings there would hold up every other route's
authentication and the readiness probe. Here a slow recommender only queues its own calls.
Rankings are not batched (unlike predict texts, each user's ranking is one independent call, and
the ``Recommender`` is safe to call from several threads at once).

Adding items takes a per-recommender lock around "is the id new?" and the add, so two clients
adding one id at once get one 201 and one 409, never two adds. An id another process (or another
``Recommender`` on the same folder) adds between the check and the add is a 409 too: the add
raises ``ItemExistsError`` for it (live.sqlite's UNIQUE item id).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from tunelab.apps.recommend.live import ItemExistsError  # live.py only: the Recommender stays unimported
from tunelab.errors import ConfigError, DataError, RunError, first_line
from tunelab.serve.registry import ModelNotServedError

log = logging.getLogger(__name__)

WORKERS = 4  # threads per recommender: concurrent calls into one recommender
T = TypeVar("T")


class RecommenderFailedError(RuntimeError):
    """A recommender raised something other than a ``DataError``: a server fault (HTTP 500)."""


class ItemConflictError(Exception):
    """Items whose ids the recommender already has (HTTP 409); nothing of the batch was added."""

    def __init__(self, ids: Sequence[str]) -> None:
        shown = ", ".join(repr(i) for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        super().__init__(
            f"item(s) {shown} already exist; nothing was added (item ids are never overwritten: send new ids)"
        )
        self.ids = list(ids)


class ItemRejectedError(Exception):
    """The recommender refused an item (``DataError``: e.g. empty text); HTTP 422 naming it."""

    def __init__(self, index: int, item_id: str, reason: str) -> None:
        super().__init__(f"items[{index}] ({item_id!r}): {reason}; nothing was added")


@dataclass(frozen=True)
class EventOutcome:
    """What became of one event: ``recorded``, or rejected with a code and a one-line reason."""

    status: str  # recorded | rejected
    code: str | None = None  # unknown_item | invalid_event | internal_error
    message: str | None = None


@dataclass
class ServedRecommender:
    """One recommender, under ``name``, with its thread pool (made by ``RecommenderRegistry.start``)."""

    name: str
    recommender: Any  # tunelab.apps.recommend.Recommender
    source: str
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    executor: ThreadPoolExecutor | None = None
    add_lock: threading.Lock = field(default_factory=threading.Lock)
    replaced_logged: bool = False  # its folder was rebuilt under it: said once in the log

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in this recommender's threads; an unexpected error is a 500."""
        if self.executor is None:
            raise RecommenderFailedError(f"recommender {self.name!r} is not started")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))
        except (DataError, ItemConflictError, ItemRejectedError):
            raise
        except Exception as exc:
            raise RecommenderFailedError(f"recommender {self.name!r} failed: {type(exc).__name__}") from exc

    async def rank(self, user_id: str, *, k: int, exclude_seen: bool) -> Any:
        """The user's ``Ranking`` (a ``DataError`` is the request's fault: HTTP 422)."""
        return await self._call(self.recommender.rank, user_id, k=k, exclude_seen=exclude_seen)

    async def info(self) -> dict[str, Any]:
        """The recommender's info (counts: cheap), in the shared pool: ``Recommender.info`` never
        waits for the lock a ranking or a write holds, so a listing never waits behind them."""
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(lambda: dict(self.recommender.info))

    async def add_items(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Add ``(item_id, fields)`` items in order; all ids must be new (else nothing is added)."""
        await self._call(self._add_items, list(items))

    def _add_items(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        with self.add_lock:
            known = set(map(str, self.recommender.items))
            taken = [item_id for item_id, _ in items if item_id in known]
            if taken:
                raise ItemConflictError(taken)
            # Every item is checked before any is added: a batch is refused whole (and so never
            # adds items the 422 leaves unbilled).
            for i, (item_id, fields) in enumerate(items):
                try:
                    self.recommender.check_item(item_id, fields)
                except DataError as exc:
                    raise ItemRejectedError(i, item_id, str(exc)) from None
            # Encoded first, then written in one transaction: a failure adds none of them (a
            # half-added batch went unbilled and its retry met a 409 for the items it had added).
            try:
                self.recommender.add_items(items)
            except ItemExistsError as exc:
                # taken meanwhile by another process (the lock above covers this server's requests
                # only): the same 409 as an id known at the check, not a 422 "invalid item"
                now = set(map(str, self.recommender.items))
                taken = [item_id for item_id, _ in items if item_id in now] or [exc.item_id]
                raise ItemConflictError(taken) from None
            except DataError as exc:  # the rest was checked above; named as the batch's first item
                raise ItemRejectedError(0, items[0][0], str(exc)) from None

    async def record_events(self, events: Sequence[dict[str, Any]]) -> list[EventOutcome]:
        """Record each event on its own: one that fails never stops the others."""
        return await self._call(self._record_events, list(events))

    def _record_events(self, events: list[dict[str, Any]]) -> list[EventOutcome]:
        known = self._item_ids()  # once per batch; an id missing from it is looked up again, once
        refreshed = False
        out: list[EventOutcome] = []
        for event in events:
            item_id = str(event["item_id"])
            try:
                if item_id not in known and not refreshed:  # added since, by another request? A
                    known, refreshed = self._item_ids(), True  # batch of unknown ids looks once
                if item_id not in known:
                    out.append(self._unknown(item_id))
                    continue
                self.recommender.record_event(**event)
            except DataError as exc:  # its item is known, and items are never removed: the event's fault
                out.append(EventOutcome("rejected", "invalid_event", str(exc)))
            except RunError as exc:  # the folder was rebuilt under the server: every event fails alike,
                # so one log line, not a traceback per event (a batch of 1,000 gave 1,000)
                if not self.replaced_logged:
                    log.error("recommender %s: %s", self.name, first_line(exc))
                    self.replaced_logged = True
                out.append(EventOutcome("rejected", "internal_error", "the event could not be recorded"))
            except Exception:  # a fault, not the event's: logged; the client sees no detail. Events
                # recorded before it stay recorded and keep their results
                log.exception("recommender %s: recording an event failed", self.name)
                out.append(EventOutcome("rejected", "internal_error", "the event could not be recorded"))
            else:
                out.append(EventOutcome("recorded"))
        return out

    def _unknown(self, item_id: str) -> EventOutcome:
        return EventOutcome(
            "rejected",
            "unknown_item",
            f"item {item_id!r} is not in recommender {self.name!r}; add it first (POST "
            f"/v1/apps/recommend/{self.name}/items)",
        )

    def _item_ids(self) -> set[str]:
        return set(map(str, self.recommender.items))


class RecommenderRegistry:
    """Name -> ``ServedRecommender``; fixed at start (``--recommend``), read by the routes.

    Args:
        recommenders: ``(name, recommender)`` pairs, or ``(name, recommender, source)`` with the
            folder it was loaded from (else the recommender's ``folder``/``path`` attribute).
    """

    def __init__(self, recommenders: Iterable[Sequence[Any]] = (), *, workers: int = WORKERS) -> None:
        self._served: dict[str, ServedRecommender] = {}
        self.workers = workers
        for entry in recommenders:
            name, rec = str(entry[0]), entry[1]
            source = str(entry[2]) if len(entry) > 2 else _source(rec, name)
            if name in self._served:
                raise ConfigError(
                    f"--recommend {source}: a recommender named {name!r} is already served (from "
                    f"{self._served[name].source}); serve one under another name with NAME=DIR"
                )
            self._served[name] = ServedRecommender(name, rec, source)

    def names(self) -> list[str]:
        return sorted(self._served)

    def __contains__(self, name: object) -> bool:
        return name in self._served

    def __len__(self) -> int:
        return len(self._served)

    def get(self, name: str) -> ServedRecommender:
        """The recommender, or a 404 naming the recommenders that are served."""
        served = self._served.get(name)
        if served is None:
            names = ", ".join(self.names()) or "none (start the server with --recommend recs/<name>)"
            raise ModelNotServedError(
                f"recommender {name!r} is not served (served: {names})", code="unknown_recommender"
            )
        return served

    def all(self) -> list[ServedRecommender]:
        return [self._served[n] for n in self.names()]

    def start(self) -> None:
        for served in self._served.values():
            if served.executor is None:
                served.executor = ThreadPoolExecutor(
                    self.workers, thread_name_prefix=f"recommend-{served.name}"
                )

    async def close(self) -> None:
        """Let calls in flight finish, then close each recommender (``Recommender.close``: its
        ``live.sqlite`` connection, checkpointing the WAL); a stand-in without ``close`` is skipped."""
        for served in self._served.values():
            executor, served.executor = served.executor, None
            if executor is not None:
                await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
            close = getattr(served.recommender, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("recommender %s: closing failed", served.name)


def _source(rec: Any, name: str) -> str:
    for attr in ("folder", "path", "root"):
        value = getattr(rec, attr, None)
        if value is not None and not callable(value):
            return str(value)
    return name


__all__ = [
    "EventOutcome",
    "ItemConflictError",
    "ItemRejectedError",
    "RecommenderFailedError",
    "RecommenderRegistry",
    "ServedRecommender",
]
