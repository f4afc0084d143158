"""The sentiment monitors a server ingests for (``tunelab serve --monitor monitor.yaml``).

Each monitor gets a ``MicroBatcher`` like a model or a bot: concurrent ``POST .../documents``
batches are taken together into one ``Monitor.process_many`` call in the batcher's own thread, so
the classifier sees bigger batches, the event loop never classifies, and one monitor never runs two
batches at once (its windows are one process's, in order). A batch a request cannot get through
fails alone (the batcher runs the others again one by one; their ids make that idempotent).

Configs and classifiers are loaded before the app is built (the CLI does it before binding the
port); the ``Monitor`` objects are made when the store opens (``open``), on the server's database
unless a config names its own ``store``. A monitor whose config has ``sources`` also follows them
in a thread of its own (``follow_sources``), so one process ingests it from every source: two
processes ingesting one monitor would keep two sets of windows and could alert twice.

Reads (``trend``, ``alerts``) run in worker threads like every blocking call of the server, but
at most ``READ_THREADS`` at once for all monitors (``read``, a semaphore around the shared pool):
a burst of large trend queries waits for those few threads instead of taking the whole pool that
every other request's key check, usage row and ticket also run in. The server hands the registry
the semaphore of its usage reports (``ServeState.reports``), so monitor reads and reports together
hold at most that many of PostgreSQL's 4 pooled connections: with a semaphore of 4 of their own,
four slow trend reads took the whole pool, and other clients' key checks waited behind them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from starlette.concurrency import run_in_threadpool

from tunelab.errors import ConfigError, TunelabError, first_line
from tunelab.serve.batcher import MicroBatcher
from tunelab.serve.logging_setup import RepeatGate
from tunelab.serve.registry import ModelNotServedError
from tunelab.serve.store import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

READ_THREADS = 2  # monitor reads (trend, alerts) running at once, all monitors (and, served, usage reports)
FOLLOW_RETRY_S = 10.0  # a follower that failed (database down, say) starts again after this
FOLLOW_LOG_REPEAT_S = 300.0  # the same failure is logged again at most this often


class MonitorFailedError(RuntimeError):
    """Classifying or storing a batch failed: a server fault (HTTP 500, details in the log only)."""


class MonitorStoreError(StoreError):
    """A monitor's database failed: a 503 that names the monitor, not the key and usage database.

    A monitor with a ``store:`` of its own whose database was down answered "the key and usage
    database is unavailable" while that database was fine; the server log names the address.
    """

    def __init__(self, monitor: str, cause: StoreError) -> None:
        super().__init__(f"monitor {monitor}: {cause}")
        self.monitor = monitor


@dataclass
class _Batches:
    """The batches of concurrent requests, standing in for the batcher's encoding."""

    items: list[list[Any]]

    @property
    def lengths(self) -> list[int]:
        return [0] * len(self.items)  # tokens: not counted for documents; usage records 0

    def __len__(self) -> int:
        return len(self.items)


class _MonitorAdapter:
    """``MicroBatcher``'s predictor interface over ``Monitor.process_many``."""

    def __init__(self, served: ServedMonitor) -> None:
        self.served = served

    def encode(self, items: list[list[Any]]) -> _Batches:
        return _Batches(list(items))

    def predict_encoded(
        self, enc: _Batches, texts: list[Any], *, top_k: int = 3, batch_size: int = 64
    ) -> list[dict[str, Any]]:
        return [{"result": r} for r in self.served.monitor.process_many(enc.items)]


@dataclass
class ServedMonitor:
    """One monitor: its config and classifier, then (once the store is open) its ``Monitor``."""

    name: str
    config: Any  # tunelab.apps.monitor.MonitorConfig
    classifier: Any
    batcher: MicroBatcher = field(init=False)
    monitor: Any = None  # tunelab.apps.monitor.Monitor, made by MonitorRegistry.open
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    webhook: str | None = None  # where its alerts go (--alert-webhook, else the config's)
    follower: threading.Thread | None = None

    @property
    def source(self) -> str:
        return str(self.config.path or self.name)

    @property
    def following(self) -> bool:
        return self.follower is not None

    async def ingest(self, docs: list[Any], *, lane: Hashable = None) -> Any:
        """The ``IngestResult`` of checked documents (batched with concurrent requests; ``lane``:
        the sender's key id, so each key's batches wait in a lane of their own).

        Raises:
            StoreError: the database failed (HTTP 503, nothing of the batch stored).
            MonitorFailedError: the classifier raised; the cause is chained for the server log.
        """
        try:
            out = await self.batcher.submit(cast(Any, [docs]), lane=lane)
        except MonitorStoreError:
            raise
        except StoreError as exc:
            raise MonitorStoreError(self.name, exc) from exc
        except Exception as exc:
            raise MonitorFailedError(f"monitor {self.name!r} failed: {type(exc).__name__}") from exc
        return out.results[0]["result"]


class MonitorRegistry:
    """Name -> ``ServedMonitor``; fixed at start (``--monitor``), read by the routes.

    Args:
        monitors: ``(config, classifier)`` pairs; each is served under its config's ``name``.
    """

    def __init__(
        self,
        monitors: Iterable[Any] = (),
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        reads: asyncio.Semaphore | None = None,
    ) -> None:
        self._monitors: dict[str, ServedMonitor] = {}
        self._stop = threading.Event()
        # The server's long-read semaphore (ServeState.reports), or one of READ_THREADS at first use.
        self._reads = reads
        for config, classifier in monitors:
            name = str(config.name)
            if name in self._monitors:
                raise ConfigError(
                    f"--monitor {config.path}: a monitor named {name!r} is already served (from "
                    f"{self._monitors[name].source}); give each monitor its own name"
                )
            served = ServedMonitor(name, config, classifier)
            served.batcher = MicroBatcher(
                cast(Any, _MonitorAdapter(served)),
                max_batch=max_batch,
                max_wait_ms=max_wait_ms,
                name=f"monitor-{name}",
            )
            self._monitors[name] = served

    def names(self) -> list[str]:
        return sorted(self._monitors)

    def __contains__(self, name: object) -> bool:
        return name in self._monitors

    def __len__(self) -> int:
        return len(self._monitors)

    def get(self, name: str) -> ServedMonitor:
        """The monitor, or a 404 naming the monitors that are served."""
        served = self._monitors.get(name)
        if served is None:
            names = ", ".join(self.names()) or "none (start the server with --monitor monitor.yaml)"
            raise ModelNotServedError(
                f"monitor {name!r} is not served (served: {names})", code="unknown_monitor"
            )
        return served

    def all(self) -> list[ServedMonitor]:
        return [self._monitors[n] for n in self.names()]

    async def read(self, fn: Callable[[], T], *, monitor: str | None = None) -> T:
        """``fn()`` (a store read of ``monitor``'s, which its failure names) in a worker thread, at
        most ``READ_THREADS`` of them at once."""
        if self._reads is None:
            self._reads = asyncio.Semaphore(READ_THREADS)
        async with self._reads:  # the others wait here, on the event loop, holding no thread
            try:
                return await run_in_threadpool(fn)
            except StoreError as exc:
                if monitor is None or isinstance(exc, MonitorStoreError):
                    raise
                raise MonitorStoreError(monitor, exc) from exc

    @property
    def opened(self) -> bool:
        """Every monitor has its ``Monitor`` (``open`` was called)."""
        return all(m.monitor is not None for m in self._monitors.values())

    # -- life cycle ------------------------------------------------------------------------------------

    def open(self, store: Any, *, alert_webhook: str | None = None) -> None:
        """Make each ``Monitor`` (blocking: it reads its windows back from the store).

        A config without ``store`` uses ``store``, the server's database (which must then be a
        monitor store: ``open_monitor_store``); a config with one opens its own.

        All or none: when one fails (another process ingests it, its store cannot be opened), those
        already opened are closed before the error goes on. Left open, they kept their leases, store
        connections and lock files, and a retry in the same process found them busy.
        """
        from tunelab.apps.monitor import Monitor

        opened: list[ServedMonitor] = []
        try:
            for served in self._monitors.values():
                if served.config.store is None and not hasattr(store, "pending_alerts"):
                    raise ConfigError(
                        f"monitor {served.name}: the server's store has no monitor tables "
                        "(open it with tunelab.apps.monitor.open_monitor_store)"
                    )
                own = store if served.config.store is None else None
                served.monitor = Monitor(served.config, store=own, classifier=served.classifier)
                opened.append(served)
                served.webhook = alert_webhook or served.config.webhook
                if served.webhook is None:
                    # Its alerts stored and ended meanwhile are not for a webhook added later (those
                    # with one are recorded by the AlertWebhook made for them): store.PENDING.
                    owed = served.monitor.store.set_alert_webhook(served.name, False)
                    if owed:
                        log.warning(
                            "monitor %s: %d alert(s) stored while a webhook was configured wait for "
                            "one (none is given now): a start with a webhook sends them",
                            served.name,
                            owed,
                        )
        except BaseException:
            for served in reversed(opened):
                monitor, served.monitor = served.monitor, None
                try:
                    monitor.close()  # its own store only; the server's is the caller's to close
                except Exception:  # the first error is the one to report
                    log.warning(
                        "monitor %s: closing it after a failed start failed", served.name, exc_info=True
                    )
                served.webhook = None
            raise

    def start(self, on_ingest: Callable[[ServedMonitor, list[Any]], None], *, follow: bool) -> None:
        """Start the batchers and, with ``follow``, a follower thread per monitor with sources.

        ``on_ingest(served, results)`` is called after each stored batch, from the thread that
        stored it (a batcher's or a follower's).
        """
        for served in self._monitors.values():
            served.monitor.on_ingest = lambda results, s=served: on_ingest(s, results)
            served.batcher.start()
            if follow and served.config.sources:
                served.follower = threading.Thread(
                    target=self._follow, args=(served,), name=f"follow-{served.name}", daemon=True
                )
                served.follower.start()

    def _follow(self, served: ServedMonitor) -> None:
        """Follow the config's sources until the server stops; a failure is logged and retried.

        Logged once per distinct failure and again every ``FOLLOW_LOG_REPEAT_S`` while it lasts: a
        source that cannot be read for an hour wrote 360 tracebacks. A tunelab error (a database
        down, say) is its one line; anything else keeps its traceback. A source gone or unreadable
        is no failure here: ``Monitor.run`` checks that the sources exist only on its first call,
        and ``poll`` warns about one that went away while the others go on (checked again at each
        restart, one folder removed failed every restart and no source was read again).
        """
        gate = RepeatGate(FOLLOW_LOG_REPEAT_S)
        while not self._stop.is_set():
            try:
                served.monitor.run(stop=self._stop)
            except Exception as exc:
                ours = isinstance(exc, TunelabError)
                message = first_line(exc) if ours else f"{type(exc).__name__}: {exc}"
                if gate.should_log(served.name, message, time.monotonic()):
                    log.warning(
                        "monitor %s: following its sources failed (%s); retrying every %.0fs",
                        served.name,
                        message,
                        FOLLOW_RETRY_S,
                        exc_info=not ours,
                    )
                self._stop.wait(FOLLOW_RETRY_S)

    async def close(self) -> None:
        """Stop the followers (each commits the batch in hand), drain the batchers, close the stores."""
        from starlette.concurrency import run_in_threadpool

        self._stop.set()
        for served in self._monitors.values():
            await served.batcher.close()
            if served.follower is not None:
                await run_in_threadpool(served.follower.join, 60)
                served.follower = None
            if served.monitor is not None:
                served.monitor.on_ingest = None
                await run_in_threadpool(served.monitor.close)  # its own store only


__all__ = ["MonitorFailedError", "MonitorRegistry", "ServedMonitor"]
