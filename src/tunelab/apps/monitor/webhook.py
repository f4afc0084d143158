"""Alerts to a webhook: each new alert POSTed as JSON, retried with back-off until it is delivered.

The outbox is the alerts table itself: an alert is pending until ``mark_alert_delivered``, so an
alert stored while the webhook is down waits there and goes out at the next start. Which alerts
are the webhook's: those still open, and those stored since the monitor has had a webhook
(``store.PENDING``; recorded when this worker is made, ``set_alert_webhook``): a webhook added to
a monitor that ran without one is not sent its history, each ended episode as "alert.opened".
The service's delivery loop (``tunelab.serve.webhook.OutboxWorker``) does the POST, the back-off
and the headers; the alert's id is the ``Idempotency-Key``. Delivery is at least once:
a crash between the receiver's 2xx and the mark sends that alert again with the same key. An
alert is never given up (nothing is lost); its attempts and next try are kept in memory, so a
restart tries every pending alert at once.

Each monitor is delivered by the one process that ingests it (``tunelab serve --monitor`` or
``tunelab app monitor run``), scoped by name: two processes on one database never send each
other's monitors' alerts.

Body::

    {"event": "alert.opened", "attempt": 1, "alert": {...Alert.to_dict()...},
     "documents": [{"id", "time", "label", "score", "topic", "source", "text"}, ...]}

``documents`` are the alert's triggering documents as stored (texts cut at ``EXCERPT`` characters).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tunelab.serve.logging_setup import RepeatGate
from tunelab.serve.webhook import OutboxWorker, Outgoing, post_json

log = logging.getLogger(__name__)

EVENT = "alert.opened"
EXCERPT = 1000  # characters of a document's text in the body
SCAN = 200  # pending alerts read per monitor and round (oldest first)
# Defaults of the follower process (the server takes its --webhook-* settings).
TIMEOUT_S, BACKOFF_S, MAX_BACKOFF_S, POLL_S = 10.0, 2.0, 600.0, 5.0
TARGET_ERROR_LOG_S = 300.0  # a target whose store keeps failing is logged again at most this often


@dataclass(frozen=True)
class AlertTarget:
    """Where a monitor's alerts go: its store, its name and the URL."""

    store: Any  # a monitor store (``open_monitor_store``)
    name: str
    url: str


class AlertWebhook(OutboxWorker):
    """Delivers the pending alerts of ``targets`` (see the module docstring).

    Args:
        targets: one per monitor delivered by this process.
        secret: signs bodies (``X-Tunelab-Signature``); default ``$TUNELAB_WEBHOOK_SECRET``.
        metrics: ``ServeMetrics`` (counts attempts in ``tunelab_alert_webhook_deliveries``) or None.
    """

    event = EVENT
    noun = "alert"
    task_name = "alert-webhook"

    def __init__(
        self,
        targets: Sequence[AlertTarget],
        *,
        secret: str | None = None,
        timeout_s: float = TIMEOUT_S,
        backoff_s: float = BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        poll_s: float = POLL_S,
        metrics: Any = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        post: Callable[[str, bytes, dict[str, str], float], int] = post_json,
    ) -> None:
        super().__init__(
            None,
            secret=secret if secret is not None else os.environ.get("TUNELAB_WEBHOOK_SECRET") or None,
            timeout_s=timeout_s,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            max_attempts=None,  # never given up: an alert waits for the webhook to come back
            poll_s=poll_s,
            metrics=metrics,
            now=now,
            post=post,
        )
        self.targets = list(targets)
        self._tries: dict[str, tuple[int, datetime]] = {}  # alert id -> (attempts made, next due)
        self._target: dict[str, AlertTarget] = {}  # alert id -> where it came from
        self._in_flight: set[str] = set()  # leased, not answered yet
        # While ``drain`` runs: the alerts it has tried (each once), and the event that stops it.
        self._drained: set[str] | None = None
        self._drain_stop: threading.Event | None = None
        # Per target index: a served monitor with its own database down is logged once per error
        # and TARGET_ERROR_LOG_S, not per lease
        self._target_errors = RepeatGate(TARGET_ERROR_LOG_S)
        # Targets whose store recorded that they have a webhook: done here, before the monitor
        # stores anything, so its alerts from now on are the webhook's; one whose store failed is
        # tried again at each lease (its alerts are not leased until then).
        self._recorded: set[int] = set()
        for i in range(len(self.targets)):
            try:
                self._record(i)
            except Exception as exc:
                self._target_failed(i, self.targets[i], exc, now())

    def lease(self, now: datetime, limit: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        if self._drain_stop is not None and self._drain_stop.is_set():
            return out  # SIGTERM during a --once drain: no more POSTs
        for i, target in enumerate(self.targets):
            # One target's store failing (a served monitor with its own database, unreachable) must
            # not end the round: the other monitors' alerts are still leased and POSTed.
            try:
                self._record(i)
                if self._lease_target(target, now, limit, out):
                    return out
            except Exception as exc:
                self._target_failed(i, target, exc, now)
                continue
            if self._target_errors.recovered(i):
                log.warning("alert webhook: monitor %s: its store can be read again", target.name)
        return out

    def _record(self, index: int) -> None:
        """Record in the target's store that its monitor has a webhook (once; see the docstring).
        A store without ``set_alert_webhook`` (a stand-in) has every pending alert sent."""
        if index in self._recorded:
            return
        target = self.targets[index]
        record = getattr(target.store, "set_alert_webhook", None)
        if record is not None:
            record(target.name, True)
        self._recorded.add(index)

    def _lease_target(self, target: AlertTarget, now: datetime, limit: int, out: list[Outgoing]) -> bool:
        """Lease ``target``'s due alerts into ``out``; True once ``out`` holds ``limit``."""
        for alert in self._pending(target):
            attempts, due = self._tries.get(alert.id, (0, now))
            if due > now:
                continue  # backing off
            if self._drained is not None and alert.id in self._drained:
                continue  # tried in this drain: its back-off may have run out, but once is once
            # Read before the alert counts as leased: a store failing here leaves it untried.
            documents = [_document(d) for d in target.store.documents(target.name, alert.docs)]
            if self._drained is not None:
                self._drained.add(alert.id)
            self._tries[alert.id] = (attempts + 1, now + timedelta(seconds=self.lease_s))
            self._target[alert.id] = target
            self._in_flight.add(alert.id)
            payload = {"alert": alert.to_dict(), "documents": documents}
            out.append(Outgoing(alert.id, attempts + 1, target.url, payload))
            if len(out) >= limit:
                return True
        return False

    def _target_failed(self, index: int, target: AlertTarget, exc: Exception, now: datetime) -> None:
        """Log a target's store error: once per error, and again every ``TARGET_ERROR_LOG_S``."""
        message = f"{type(exc).__name__}: {exc}"
        if self._target_errors.should_log(index, message, now.timestamp()):
            log.warning(
                "alert webhook: monitor %s: reading its pending alerts failed (%s); its alerts wait, "
                "the other monitors' are delivered",
                target.name,
                message,
            )

    @staticmethod
    def _pending(target: AlertTarget) -> Iterator[Any]:
        """Every pending alert of ``target``, oldest first, a page of ``SCAN`` at a time: one page
        only starved newer alerts for good behind ``SCAN`` old ones backing off (never given up)."""
        after = None
        while True:
            page = target.store.pending_alerts(target.name, limit=SCAN, after=after)
            yield from page
            if len(page) < SCAN:
                return
            after = page[-1].id

    def delivered(self, key: str, now: datetime) -> None:
        target = self._target.pop(key)
        self._tries.pop(key, None)
        self._in_flight.discard(key)
        target.store.mark_alert_delivered(key, now)
        self._receiver_is_back(target.url, now)

    def _receiver_is_back(self, url: str, now: datetime) -> None:
        """Make the alerts backing off from ``url`` due now: it has just taken one.

        Each kept its own back-off (up to 10 minutes), so after an outage a new alert went through
        at once while older ones waited for their turn: delivered out of order, minutes late.
        """
        for key, (attempts, due) in self._tries.items():
            target = self._target.get(key)
            if due > now and key not in self._in_flight and target is not None and target.url == url:
                self._tries[key] = (attempts, now)

    def failed(self, key: str, *, error: str, retry_at: datetime | None, now: datetime) -> None:
        self._in_flight.discard(key)
        attempts, _ = self._tries.get(key, (1, now))
        self._tries[key] = (attempts, retry_at or now)

    def counter(self) -> Any:
        return getattr(self.metrics, "alert_webhook", None)

    async def drain(self, stop: threading.Event | None = None) -> None:
        """Try every alert due now once (no waiting for retries): ``--once`` runs end with this.

        Once each, even where a failed alert's back-off runs out while others' POSTs time out;
        and no further POST once ``stop`` is set (SIGTERM), so a hanging webhook cannot hold the
        run for minutes. What was not delivered stays pending for the next run.
        """
        self._drained, self._drain_stop = set(), stop
        try:
            while await self.run_once():
                pass
        finally:
            self._drained = self._drain_stop = None


def _document(d: dict[str, Any]) -> dict[str, Any]:
    text = d["text"] if len(d["text"]) <= EXCERPT else d["text"][: EXCERPT - 1] + "…"
    return {
        "id": d["id"],
        "time": d["time"].isoformat(),
        "label": d["label"],
        "score": d["score"],
        "negative": d["negative"],
        "topic": d["topic"],
        "source": d["source"],
        "text": text,
    }


def follower_webhook(store: Any, name: str, url: str) -> AlertWebhook:
    """The follower process's worker for one monitor, with this module's defaults (read now)."""
    return AlertWebhook(
        [AlertTarget(store, name, url)],
        timeout_s=TIMEOUT_S,
        backoff_s=BACKOFF_S,
        max_backoff_s=MAX_BACKOFF_S,
        poll_s=POLL_S,
    )


class DeliveryThread:
    """An ``AlertWebhook`` on its own event loop in a daemon thread, for a process without one
    (``tunelab app monitor run``): ``start()``, ``wake()`` from any thread, ``stop()``."""

    def __init__(self, worker: AlertWebhook) -> None:
        self.worker = worker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="alert-webhook", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.worker.start()
        self._ready.set()
        await self._stopped.wait()
        await self.worker.close()

    def wake(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.worker.wake)

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the loop once the POST in flight has finished and its outcome is recorded.

        Waits at most ``timeout_s`` (default: as long as the worker's ``close`` may take, the
        POST's timeout + 5 s). Five seconds, shorter than that, let the caller close the store
        under a POST still in flight: its acknowledgement was then lost (a traceback, and the
        alert sent again at the next start). An alert whose POST was cut short stays pending.
        """
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(self.worker.timeout_s + 10 if timeout_s is None else timeout_s)


__all__ = ["EVENT", "AlertTarget", "AlertWebhook", "DeliveryThread", "follower_webhook"]
