"""``--handoff-webhook URL``: POST each new hand-off ticket as JSON, from the store's outbox.

A ticket and its outbox row are written in one transaction (``add_turn``), so a ticket is never
lost between the database and the webhook: a background task leases due rows, POSTs them, and
marks each delivered, in the same store. Failures are retried with exponential back-off
(``webhook_backoff_s`` doubled per attempt, at most ``webhook_max_backoff_s``) up to
``webhook_max_attempts``; then the ticket's delivery is given up (logged, counted in
``tunelab_webhook_deliveries_total{outcome="gave_up"}``; the ticket itself stays open for agents).

Delivered once: a delivered row is never taken again, and while one worker holds a row (its lease,
longer than the request timeout) no other worker, in this process or another one on the same
PostgreSQL, takes it. A restart resumes where the outbox says. The one gap no sender can close is
a crash after the receiver got the POST but before ``delivered_at`` is written: that ticket is sent
again, with the same ``Idempotency-Key`` header (the ticket id) for the receiver to drop it.

The POST goes through ``urllib.request`` in a worker thread: the standard library does one JSON POST
with a timeout well, and the service needs no HTTP client library for it. Redirects are not followed
(a webhook that moved is a configuration error, and following one would resend the body elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool

log = logging.getLogger("tunelab.serve.webhook")

EVENT = "ticket.created"
BATCH = 10  # outbox rows leased per round


class DeliveryError(Exception):
    """One failed POST: the reason, for the outbox's ``last_error`` and the log."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx then surfaces as an HTTPError: a failed attempt


def post_json(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """POST ``body``; the status if it is 2xx, else ``DeliveryError`` naming what went wrong."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{type(exc).__name__}: {reason}") from None


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the body, for ``X-Tunelab-Signature`` (as GitHub signs hooks)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookWorker:
    """Delivers the outbox of ``store`` to ``settings.handoff_webhook`` from a background task.

    ``wake()`` (from the event loop, after a ticket is stored) makes it look at once; otherwise it
    looks every ``webhook_poll_s`` seconds, or when its own next retry falls due if that is sooner.
    """

    def __init__(
        self,
        store: Any,
        settings: Any,
        *,
        metrics: Any = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        post: Callable[[str, bytes, dict[str, str], float], int] = post_json,
    ) -> None:
        self.store = store
        self.url: str = settings.handoff_webhook
        self.secret: str | None = settings.webhook_secret
        self.timeout_s = float(settings.webhook_timeout_s)
        self.backoff_s = float(settings.webhook_backoff_s)
        self.max_backoff_s = float(settings.webhook_max_backoff_s)
        self.max_attempts = int(settings.webhook_max_attempts)
        self.poll_s = float(settings.webhook_poll_s)
        self.lease_s = 2 * self.timeout_s + 10  # longer than one POST can take: never two at once
        self.metrics = metrics
        self.now = now
        self.post = post
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._next_retry: datetime | None = None

    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="handoff-webhook")

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                full = await self.run_once()
            except Exception:  # the database may be down: keep trying, never die
                log.exception("webhook outbox: reading or updating the store failed")
                full = False
            if full:
                continue  # more may be due: no wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._wait_s())
            self._wake.clear()

    def _wait_s(self) -> float:
        wait = self.poll_s
        if self._next_retry is not None:
            wait = min(wait, max(0.0, (self._next_retry - self.now()).total_seconds()))
        return wait

    async def run_once(self) -> bool:
        """Deliver what is due now; True when a full batch was leased (more may be waiting)."""
        now = self.now()
        if self._next_retry is not None and self._next_retry <= now:
            self._next_retry = None  # due now: leased below (or by another worker)
        leased = await run_in_threadpool(
            self.store.lease_deliveries, now=now, lease_s=self.lease_s, limit=BATCH
        )
        for delivery in leased:
            await self._deliver(delivery)
        return len(leased) == BATCH

    async def _deliver(self, delivery: Any) -> None:
        ticket, attempt = delivery.ticket, delivery.attempts
        from tunelab.serve.support_schemas import TicketOut

        # The ticket as GET /v1/apps/support/tickets/{id} shows it (same schema, same time format).
        shown = TicketOut.model_validate(ticket.to_dict()).model_dump(mode="json")
        body = json.dumps({"event": EVENT, "attempt": attempt, "ticket": shown}, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "tunelab-webhook",
            "Idempotency-Key": ticket.ticket_id,
            "X-Tunelab-Event": EVENT,
        }
        if self.secret:
            headers["X-Tunelab-Signature"] = sign(self.secret, body)
        try:
            await run_in_threadpool(self.post, self.url, body, headers, self.timeout_s)
        except Exception as exc:  # DeliveryError, or anything a custom post raises
            await self._failed(ticket.ticket_id, attempt, str(exc) or type(exc).__name__)
            return
        await run_in_threadpool(self.store.mark_delivered, ticket.ticket_id, now=self.now())
        self._count("delivered")
        log.info("webhook: delivered ticket %s (attempt %d)", ticket.ticket_id, attempt)

    async def _failed(self, ticket_id: str, attempt: int, reason: str) -> None:
        now = self.now()
        if attempt >= self.max_attempts:
            await run_in_threadpool(self.store.mark_failed, ticket_id, error=reason, retry_at=None, now=now)
            self._count("gave_up")
            log.error(
                "webhook: gave up on ticket %s after %d attempts (last: %s); it stays open for agents",
                ticket_id,
                attempt,
                reason,
            )
            return
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        retry_at = now + timedelta(seconds=delay)
        await run_in_threadpool(self.store.mark_failed, ticket_id, error=reason, retry_at=retry_at, now=now)
        self._next_retry = retry_at if self._next_retry is None else min(self._next_retry, retry_at)
        self._count("failed")
        log.warning(
            "webhook: ticket %s attempt %d failed (%s); retry in %.1fs", ticket_id, attempt, reason, delay
        )

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook.labels(outcome).inc()


__all__ = ["DeliveryError", "WebhookWorker", "post_json", "sign"]
