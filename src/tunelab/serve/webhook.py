"""Webhooks from an outbox: ``--handoff-webhook URL`` POSTs each new hand-off ticket as JSON.

``OutboxWorker`` is the delivery loop any outbox shares (POST, retries with back-off, the
``Idempotency-Key`` and signature headers, metrics and log lines); ``WebhookWorker`` is the support
bot's, over the store's ``tunelab_support_outbox``, and the monitor's alerts have their own
(``tunelab.apps.monitor.webhook``).

A ticket and its outbox row are written in one transaction (``add_turn``), so a ticket is never
lost between the database and the webhook: a background task leases due rows, POSTs them, and
marks each delivered, in the same store. Failures are retried with exponential back-off
(``webhook_backoff_s`` doubled per attempt, at most ``webhook_max_backoff_s``) up to
``webhook_max_attempts``; then the ticket's delivery is given up (logged, counted in
``tunelab_webhook_deliveries_total{outcome="gave_up"}``; the ticket itself stays open for agents).

Delivered once: a delivered row is never taken again, and while one worker holds a row (its lease,
longer than the request timeout) no other worker, in this process or another one on the same
PostgreSQL, takes it. A worker leases one row just before POSTing it, never a batch up front: rows
waiting behind slow POSTs would outlive their leases and be taken and sent by another worker too.
A failure is recorded only while the worker still holds the row's lease. A restart resumes where
the outbox says. The one gap no sender can close is a crash after the receiver got the POST but
before ``delivered_at`` is written: that ticket is sent again, with the same ``Idempotency-Key``
header (the ticket id) for the receiver to drop it.

The POST goes through ``urllib.request`` in a worker thread: the standard library does one JSON POST
with a timeout well, and the service needs no HTTP client library for it. Redirects are not followed
(a webhook that moved is a configuration error, and following one would resend the body elsewhere).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool

log = logging.getLogger("tunelab.serve.webhook")

EVENT = "ticket.created"
BATCH = 10  # outbox rows delivered per round (each leased just before its POST)


class DeliveryError(Exception):
    """One failed POST: the reason, for the outbox's ``last_error`` and the log."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx then surfaces as an HTTPError: a failed attempt


def post_json(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """POST ``body``; the status if it is 2xx, else ``DeliveryError`` naming what went wrong.

    A URL with ``user:password@`` sends them as HTTP Basic auth, as curl and requests do: urllib
    would take them for part of the host name and fail every attempt ("Name or service not known").
    """
    url, headers = _basic_auth(url, headers)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{type(exc).__name__}: {reason}") from None
    except (ValueError, http.client.HTTPException) as exc:
        # their texts quote the URL, path and query included (a token), and go to the log and the
        # outbox's last_error on every retry: the kind only
        raise DeliveryError(f"{type(exc).__name__}: the request could not be sent to this URL") from None


def _basic_auth(url: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """``url`` without its ``user:password@``, and ``headers`` with them as ``Authorization: Basic``
    (unless the headers already carry an ``Authorization``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, headers
    host = parts.netloc.rpartition("@")[2]
    bare = urllib.parse.urlunsplit(parts._replace(netloc=host))
    if any(name.lower() == "authorization" for name in headers):
        return bare, headers
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return bare, {**headers, "Authorization": f"Basic {token}"}


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the body, for ``X-Tunelab-Signature`` (as GitHub signs hooks)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Outgoing:
    """One due item to POST: ``key`` (its id: the ``Idempotency-Key``), the attempt it is, its URL
    and its JSON ``payload`` (the body is ``{"event", "attempt", **payload}``)."""

    key: str
    attempt: int
    url: str
    payload: dict[str, Any]


class OutboxWorker:
    """Delivers due items of an outbox from a background task: POST, back-off, give-up, metrics, logs.

    What is due and how an outcome is recorded is the subclass's (``lease``, ``delivered``,
    ``failed``: blocking calls, run in a worker thread). ``wake()`` (from the event loop, after
    something was queued) makes it look at once; otherwise it looks every ``poll_s`` seconds, or
    when its own next retry falls due if that is sooner. A failed attempt is retried after
    ``backoff_s`` doubled per attempt, at most ``max_backoff_s``; after ``max_attempts`` (``None``:
    never) it is given up.
    """

    event = "item.created"  # X-Tunelab-Event and the body's "event"
    noun = "item"  # what the log lines call one
    task_name = "webhook"

    def __init__(
        self,
        url: str | None,
        *,
        secret: str | None,
        timeout_s: float,
        backoff_s: float,
        max_backoff_s: float,
        max_attempts: int | None,
        poll_s: float,
        metrics: Any = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        post: Callable[[str, bytes, dict[str, str], float], int] = post_json,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = float(timeout_s)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_attempts = max_attempts
        self.poll_s = float(poll_s)
        self.lease_s = 2 * self.timeout_s + 10  # longer than one POST can take: never two at once
        self.metrics = metrics
        self.now = now
        self.post = post
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._next_retry: datetime | None = None
        self._closing = False

    # -- what subclasses provide (blocking; called in a worker thread) ---------------------------------

    def lease(self, now: datetime, limit: int) -> list[Outgoing]:
        """Up to ``limit`` items due at ``now``, each taken for ``lease_s`` seconds (counted an attempt)."""
        raise NotImplementedError

    def delivered(self, key: str, now: datetime) -> None:
        raise NotImplementedError

    def failed(self, key: str, *, error: str, retry_at: datetime | None, now: datetime) -> None:
        """A failed attempt: try again at ``retry_at``, or (``None``) give the item up."""
        raise NotImplementedError

    def counter(self) -> Any:
        """The ``Counter`` (label: outcome) attempts are counted in, or None."""
        return None

    gave_up_note = ""  # appended to the give-up log line

    # -- the loop --------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.task_name)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def close(self) -> None:
        """Stop after the item in hand: its POST's outcome is recorded before this returns.

        Cancelling mid-item would leave a delivered POST unrecorded (the store closes next), so
        the item is sent again after the restart: harmless with the idempotency key, but a duplicate
        the receiver must drop. Only a POST still hanging after its timeout is cancelled.
        """
        if self._task is None:
            return
        self._closing = True
        self.wake()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.timeout_s + 5)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        self._closing = False

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closing:
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
        """Deliver up to ``BATCH`` items due now; True when that many were (more may be waiting).

        Each item is leased just before its POST: a lease then has to outlast one POST, not the
        POSTs of the items leased with it (10 slow POSTs would outlive a batch's lease and let
        another worker send the waiting items too).
        """
        now = self.now()
        if self._next_retry is not None and self._next_retry <= now:
            self._next_retry = None  # due now: leased below (or by another worker)
        for _ in range(BATCH):
            if self._closing:
                return False
            leased = await run_in_threadpool(self.lease, self.now(), 1)
            if not leased:
                return False
            for item in leased:
                await self._deliver(item)
        return True

    async def _deliver(self, item: Outgoing) -> None:
        body = json.dumps(
            {"event": self.event, "attempt": item.attempt, **item.payload}, ensure_ascii=False
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "tunelab-webhook",
            "Idempotency-Key": item.key,
            "X-Tunelab-Event": self.event,
        }
        if self.secret:
            headers["X-Tunelab-Signature"] = sign(self.secret, body)
        try:
            await run_in_threadpool(self.post, item.url, body, headers, self.timeout_s)
        except Exception as exc:  # DeliveryError, or anything a custom post raises
            await self._failed(item.key, item.attempt, str(exc) or type(exc).__name__)
            return
        await run_in_threadpool(self.delivered, item.key, self.now())
        self._count("delivered")
        log.info("webhook: delivered %s %s (attempt %d)", self.noun, item.key, item.attempt)

    async def _failed(self, key: str, attempt: int, reason: str) -> None:
        now = self.now()
        if self.max_attempts is not None and attempt >= self.max_attempts:
            await run_in_threadpool(lambda: self.failed(key, error=reason, retry_at=None, now=now))
            self._count("gave_up")
            log.error(
                "webhook: gave up on %s %s after %d attempts (last: %s)%s",
                self.noun,
                key,
                attempt,
                reason,
                self.gave_up_note,
            )
            return
        # The exponent is capped: a receiver down for a week (alerts never give up) reaches attempt
        # 1,025, where 2.0 ** 1024 overflows a float.
        delay = min(self.max_backoff_s, self.backoff_s * 2.0 ** min(attempt - 1, 60))
        retry_at = now + timedelta(seconds=delay)
        await run_in_threadpool(lambda: self.failed(key, error=reason, retry_at=retry_at, now=now))
        self._next_retry = retry_at if self._next_retry is None else min(self._next_retry, retry_at)
        self._count("failed")
        log.warning(
            "webhook: %s %s attempt %d failed (%s); retry in %.1fs", self.noun, key, attempt, reason, delay
        )

    def _count(self, outcome: str) -> None:
        counter = self.counter()
        if counter is not None:
            counter.labels(outcome).inc()


class WebhookWorker(OutboxWorker):
    """Delivers the hand-off outbox of ``store`` to ``settings.handoff_webhook``.

    Rows are leased in the store (one worker per row, also across processes on one PostgreSQL)
    and their attempts, next try and give-up are kept there, so a restart resumes.
    """

    event = EVENT
    noun = "ticket"
    task_name = "handoff-webhook"
    gave_up_note = "; it stays open for agents"

    def __init__(
        self,
        store: Any,
        settings: Any,
        *,
        metrics: Any = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        post: Callable[[str, bytes, dict[str, str], float], int] = post_json,
    ) -> None:
        super().__init__(
            settings.handoff_webhook,
            secret=settings.webhook_secret,
            timeout_s=settings.webhook_timeout_s,
            backoff_s=settings.webhook_backoff_s,
            max_backoff_s=settings.webhook_max_backoff_s,
            max_attempts=int(settings.webhook_max_attempts),
            poll_s=settings.webhook_poll_s,
            metrics=metrics,
            now=now,
            post=post,
        )
        self.store = store
        self._leases: dict[str, datetime] = {}  # ticket id -> the end of the lease this worker holds

    def lease(self, now: datetime, limit: int) -> list[Outgoing]:
        from tunelab.serve.support_schemas import TicketOut

        out = []
        for delivery in self.store.lease_deliveries(now=now, lease_s=self.lease_s, limit=limit):
            ticket = delivery.ticket
            self._leases[ticket.ticket_id] = delivery.lease
            # The ticket as GET /v1/apps/support/tickets/{id} shows it (same schema, same time format).
            shown = TicketOut.model_validate(ticket.to_dict()).model_dump(mode="json")
            out.append(Outgoing(ticket.ticket_id, delivery.attempts, str(self.url), {"ticket": shown}))
        return out

    def delivered(self, key: str, now: datetime) -> None:
        # Unconditional, even if the lease ran out meanwhile: the receiver has the ticket, and
        # recording that stops any further sends of it.
        self._leases.pop(key, None)
        self.store.mark_delivered(key, now=now)

    def failed(self, key: str, *, error: str, retry_at: datetime | None, now: datetime) -> None:
        lease = self._leases.pop(key, None)
        if not self.store.mark_failed(key, error=error, retry_at=retry_at, now=now, lease=lease):
            log.warning(
                "webhook: ticket %s failed after its lease ran out; left to the worker holding it", key
            )

    def counter(self) -> Any:
        return self.metrics.webhook if self.metrics is not None else None


__all__ = ["DeliveryError", "OutboxWorker", "Outgoing", "WebhookWorker", "post_json", "sign"]
