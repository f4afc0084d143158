"""Who may call the API, how often and how much: authentication, rate limits, quotas, metering.

The HTTP layer calls, per request and from a thread pool (every call may block on the database)::

    caller = access.authenticate(token_from_headers(authorization, x_api_key))   # 401 / 403
    access.admit(caller, texts=len(texts), request_id=rid)                        # 429
    ...  # predict
    access.record(caller=caller, model=..., version=..., texts=..., tokens=..., status=200,
                  latency_ms=..., request_id=rid)                                 # one usage row

Quotas are exact within one process: ``admit`` *reserves* the request's texts under the
request's own id, so concurrent requests cannot all pass a check made before any of them is
recorded; ``record`` with the same id turns that reservation into usage (a 2xx status) or drops it
(any other status). A row whose id holds no reservation (a request refused before or by
``admit``: 401, 404, 413, 422, 429) settles nothing: reservations are never matched by size.
The committed count is read from the usage table at the start of each window, every
``quota_refresh_s`` seconds, and before admitting a request that would leave less than
``near_margin(limit)`` texts of the quota (three quarters of it, at most 10,000 texts), so it
survives restarts and sees what other processes recorded. Across processes on one database a
quota is therefore exact up to the texts other processes have admitted but not yet recorded
(their reservations live in their own memory), unless, between two reads of one process, the
others recorded more than that margin. Rate limits are per process.

A 2xx answer that goes out without its usage row (``record(..., sent_without_row=True)``: a request
that stored something, which a "try again" would store twice) still counts against the key's quota
in this process: ``unrecorded`` keeps its texts until the window ends, added to every count read
from the database, so a key cannot go past its quota while usage rows cannot be written.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tunelab.errors import TunelabError
from tunelab.serve.keys import check_key_name, make_token, parse_token, verify_secret
from tunelab.serve.limits import Quota, Rate, TokenBucket, as_utc
from tunelab.serve.masking import Unmasked
from tunelab.serve.store.base import DuplicateKeyError, KeyRecord, Store, UsageRecord, billed

log = logging.getLogger("tunelab.serve")
_THIS = {"hour": "this hour", "day": "today (UTC)", "month": "this month"}
NEAR_TEXTS = 10_000  # near_margin's cap: see there


def near_margin(limit: int) -> float:
    """How close to its limit (texts left after a request) a key must be for ``admit`` to re-read
    the committed count instead of trusting one up to ``quota_refresh_s`` old.

    The margin is what other processes on the same database could plausibly record between two
    reads of this one (one refresh period): a small quota can go in a single burst (one request
    may carry all of it), so three quarters of it; a large one cannot, so at most ``NEAR_TEXTS``
    (a busy process serves a few hundred texts a second: some thousands in 30 s). Below the margin
    every admit pays one indexed SUM over the key's rows of the window; above it none does, which
    is the common case of a key far from its limit. A fixed rule needs no guess of the traffic or
    of how many processes serve the key; the price is that other processes recording more than
    the margin between two reads of this one can take the key past its limit by the excess.
    """
    return min(limit * 0.75, NEAR_TEXTS)


class AccessError(TunelabError):
    """A request refused by the access layer: HTTP ``status``, a stable ``code`` and a message."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def to_body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"code": ..., "message": ...}}`` (+ ``retry_after`` seconds on 429)."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            error["retry_after"] = round(self.retry_after, 3)
        return {"error": error}

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the status: ``Retry-After`` (whole seconds) or ``WWW-Authenticate``."""
        if self.retry_after is not None:
            return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}
        if self.status == 401:
            return {"WWW-Authenticate": "Bearer"}
        return {}


@dataclass(frozen=True)
class Caller:
    """An authenticated key, as the request handlers see it."""

    key_id: str
    name: str
    admin: bool


def token_from_headers(authorization: str | None, x_api_key: str | None = None) -> str | None:
    """The token from ``Authorization: Bearer <token>`` or ``X-API-Key: <token>``, else ``None``."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return x_api_key.strip() if x_api_key and x_api_key.strip() else None


@dataclass
class _QuotaState:
    """One key's quota window: committed texts (from the DB, plus what we recorded since) and the
    texts reserved by requests admitted but not yet recorded.

    ``writing`` holds the reservations whose usage row is being written, each with ``reads`` as
    the write began: the row may already be committed, so a count read from the DB meanwhile may
    hold it twice (row and reservation); ``settled`` (on ``lock``) wakes an ``admit`` waiting for
    such rows to settle.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    window_start: datetime | None = None
    used: int = 0
    loaded_at: float = -math.inf
    reservations: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (texts, monotonic)
    writing: dict[str, int] = field(default_factory=dict)  # id -> reads when its write began
    reads: int = 0  # times the count was read from the DB
    # Texts of this window answered 2xx without a usage row (see the module's docstring): no read of
    # the DB sees them, so each read adds them; a new window starts them from zero.
    unrecorded: int = 0
    settled: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.settled = threading.Condition(self.lock)

    def reserved(self) -> int:
        return sum(texts for texts, _ in self.reservations.values())

    def being_written(self) -> int:
        return sum(self.reservations[rid][0] for rid in self.writing if rid in self.reservations)


class AccessControl:
    """Authentication, per-key rate limits and quotas, and usage metering over a ``Store``.

    Thread-safe. ``clock`` (monotonic seconds) drives rate limits, ``now`` (UTC datetime) quota
    windows and usage timestamps; tests inject both.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        quota_refresh_s: float = 30.0,
        reservation_ttl_s: float = 600.0,
        settle_wait_s: float = 2.0,
    ) -> None:
        self.store = store
        self._clock = clock
        self._now = now
        self.quota_refresh_s = quota_refresh_s
        self.reservation_ttl_s = reservation_ttl_s  # a request never recorded stops holding quota
        self.settle_wait_s = settle_wait_s  # near the limit: the longest wait for rows being written
        self._lock = threading.Lock()
        self._keys: dict[str, KeyRecord] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._quotas: dict[str, _QuotaState] = {}

    # -- authentication ------------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> Caller:
        """The caller a token belongs to; ``AccessError`` 401 (missing/invalid) or 403 (revoked)."""
        if not token:
            raise AccessError(
                401, "missing_key", "no API key: send 'Authorization: Bearer <token>' or 'X-API-Key: <token>'"
            )
        invalid = AccessError(
            401, "invalid_key", "invalid API key: check the token (it is shown once, at creation)"
        )
        parsed = parse_token(token)
        if parsed is None:
            raise invalid
        key_id, secret = parsed
        key = self.store.get_key(key_id)
        # Unknown id and wrong secret take the same path and the same time: both answer invalid_key.
        if not verify_secret(secret, key.secret_hash if key else None) or key is None:
            raise invalid
        if key.revoked_at is not None:
            raise AccessError(
                403, "revoked_key", f"API key {key.name!r} was revoked on {key.revoked_at:%Y-%m-%d %H:%M} UTC"
            )
        with self._lock:
            self._keys[key.key_id] = key
        return Caller(key_id=key.key_id, name=key.name, admin=key.admin)

    def require_admin(self, caller: Caller) -> None:
        if not caller.admin:
            raise AccessError(
                403,
                "admin_required",
                f"key {caller.name!r} is not an admin key; this needs one "
                "(tunelab keys create --name NAME --admin)",
            )

    # -- limits --------------------------------------------------------------------------------------

    def admit(
        self, caller: Caller, texts: int, *, request_id: str | None = None, rate: bool = True
    ) -> str | None:
        """Let a request of ``texts`` texts through, or raise ``AccessError`` 429.

        Checks the rate (requests per second) first (``rate=False``: the route took it already,
        with ``admit_rate``), then reserves ``texts`` against the quota under ``request_id``. A
        request of more texts than the whole quota is a 413: no wait would let it through.
        ``record`` with the same id settles exactly this reservation; a row under any other id
        leaves it alone (so pass the id you record with).

        Returns:
            The reservation id (``request_id`` or a generated one), or ``None`` without a quota.
        """
        key = self._key(caller)
        if rate:
            self._take_rate(key)
        if key.quota is None:
            return None
        if texts > key.quota.limit:
            raise AccessError(
                413,
                "over_quota_size",
                f"this request has {texts} texts, more than key {key.name!r}'s whole quota of "
                f"{key.quota.limit} texts a {key.quota.period}; send fewer texts a request",
            )
        quota, state, now = key.quota, self._state(key.key_id), as_utc(self._now())
        with state.lock:
            fresh = self._sync(state, key.key_id, quota, now)
            # Near the limit (or past it), a count up to quota_refresh_s old misses what other
            # processes on the same database recorded since: read it again (see near_margin).
            if quota.limit - (state.used + state.reserved() + texts) < near_margin(quota.limit):
                self._recount(state, key.key_id, quota, now, texts, fresh=fresh)
            used, reserved = state.used, state.reserved()
            if used + reserved + texts > quota.limit:
                resets = quota.window_end(now)
                in_flight = f" (+{reserved} in flight)" if reserved else ""
                raise AccessError(
                    429,
                    "quota_exceeded",
                    f"quota exceeded for key {key.name!r}: {used}{in_flight} of {quota.limit} texts used "
                    f"{_THIS[quota.period]}, this request has {texts}; resets at {resets:%Y-%m-%dT%H:%M:%SZ}",
                    retry_after=(resets - now).total_seconds(),
                )
            rid = request_id or uuid.uuid4().hex
            state.reservations[rid] = (texts, self._clock())
        return rid

    def admit_rate(self, caller: Caller) -> None:
        """Let a request that bills no texts (a read) through the key's rate, or raise
        ``AccessError`` 429; nothing is reserved against the quota, so nothing waits to be settled."""
        self._take_rate(self._key(caller))

    def _take_rate(self, key: Any) -> None:
        if key.rate is not None:
            wait = self._bucket(key).try_take(self._clock())
            if wait > 0:
                raise AccessError(
                    429,
                    "rate_limited",
                    f"rate limit {key.rate} exceeded for key {key.name!r}: retry in {wait:.2f} s",
                    retry_after=wait,
                )

    def record(
        self,
        *,
        caller: Caller | None,
        model: str | None,
        version: str | None,
        texts: int,
        tokens: int,
        status: int,
        latency_ms: float,
        request_id: str,
        app: str | None = None,
        write: Callable[[UsageRecord], None] | None = None,
        sent_without_row: bool = False,
    ) -> None:
        """Write the request's usage row (one committed transaction), then settle its reservation.

        A 2xx status counts ``texts`` against the quota; any other status only releases it. ``app``
        names the application a request went through (``support``: ``model`` is then the bot).
        ``write`` commits the row in a transaction of its own choosing (a support message's, with
        its turn and ticket) instead of ``store.record_usage``. ``sent_without_row``: the answer goes
        out even if the row cannot be written (the request stored something), so its texts then
        count against the quota all the same (``_QuotaState.unrecorded``); otherwise a failed write
        counts nothing (the answer is withheld).
        """
        rec = UsageRecord(
            at=as_utc(self._now()),
            key_id=caller.key_id if caller else None,
            key_name=caller.name if caller else None,
            model=model,
            version=version,
            texts=int(texts),
            tokens=int(tokens),
            status=int(status),
            latency_ms=float(latency_ms),
            request_id=request_id,
            app=app,
        )
        if caller is not None:
            self._writing(caller.key_id, rec.request_id)
        stored = False
        try:
            (write or self.store.record_usage)(rec)
            stored = True
        finally:
            if caller is not None:
                counted = billed(rec.status) and (stored or sent_without_row)
                self._settle(caller.key_id, rec, counted=counted, unrecorded=not stored)

    def _settle(self, key_id: str, rec: UsageRecord, *, counted: bool, unrecorded: bool = False) -> None:
        with self._lock:
            state, key = self._quotas.get(key_id), self._keys.get(key_id)
        if state is None or key is None or key.quota is None:
            return
        first_unrecorded = False
        with state.lock:
            # Only this request's own reservation, if it made one: a request refused before or by
            # admit() reserved nothing, and a reservation of the same size is someone else's.
            state.reservations.pop(rec.request_id, None)
            began = state.writing.pop(rec.request_id, None)
            if counted and state.window_start == key.quota.window_start(rec.at):
                state.used += rec.texts
                if unrecorded:  # no row holds these texts: kept in memory, or the next read loses them
                    first_unrecorded = state.unrecorded == 0
                    state.unrecorded += rec.texts
                if began is not None and began != state.reads:
                    # A read while the row was written may have counted it already: the count is
                    # high (refuses early) until read again, so read it at the next admit.
                    state.loaded_at = -math.inf
            state.settled.notify_all()
        if first_unrecorded:  # once per key and window: each request has its own ERROR line already
            log.warning(
                "usage rows are not being written: key %r (id %s) was answered without them and this "
                "process counts their texts against its quota %s in memory only (other processes and "
                "a restart do not see them, and `tunelab usage` misses them); bill them by hand from "
                "the 'usage row not written' ERROR lines",
                Unmasked(key.name),  # the operator's name for it, to bill by (never "<email>")
                key_id,
                _THIS[key.quota.period],
            )

    def _writing(self, key_id: str, request_id: str) -> None:
        """Mark the reservation ``request_id`` as having its row written from now until it settles."""
        with self._lock:
            state = self._quotas.get(key_id)
        if state is not None:
            with state.lock:
                if request_id in state.reservations:
                    state.writing[request_id] = state.reads

    def _sync(self, state: _QuotaState, key_id: str, quota: Quota, now: datetime) -> bool:
        """(Re)load the committed count on a new window or when stale; expire lost reservations.

        A row committed but not yet settled when the count reloads is counted twice until the next
        reload: the error only ever refuses early, never admits past the quota (and near the
        limit, where that matters, ``_recount`` waits it out).

        Returns:
            Whether the count was read from the database just now.
        """
        start, mono = quota.window_start(now), self._clock()
        reload = state.window_start != start or mono - state.loaded_at >= self.quota_refresh_s
        if reload:
            self._reload(state, key_id, start, quota.window_end(now))
        expired = [r for r, (_, at) in state.reservations.items() if mono - at > self.reservation_ttl_s]
        for rid in expired:
            del state.reservations[rid]
            state.writing.pop(rid, None)
        return reload

    def _recount(
        self, state: _QuotaState, key_id: str, quota: Quota, now: datetime, texts: int, *, fresh: bool
    ) -> None:
        """Re-read the committed count for an ``admit`` of ``texts`` near the limit (``state.lock`` held).

        No read when this process's own count already refuses the request by more than the texts
        being written: the database can only add to it (a client hammering an exhausted key costs
        no queries). ``fresh``: ``_sync`` has just read the count, so that read is reused.

        A row committed while its reservation is not yet settled is counted twice. Where that could
        turn an admission into a refusal (over the limit, but by no more than the texts being
        written), wait for those rows to settle (``settle_wait_s`` at most, then refuse) and read
        again, so that concurrent requests in one process stay exact.
        """
        start, deadline = quota.window_start(now), time.monotonic() + self.settle_wait_s
        if not fresh and state.used + state.reserved() + texts - quota.limit > state.being_written():
            return
        while True:
            if not fresh:
                self._reload(state, key_id, start, quota.window_end(now))
            fresh = False
            over = state.used + state.reserved() + texts - quota.limit
            left = deadline - time.monotonic()
            if over <= 0 or over > state.being_written() or left <= 0:
                return
            state.settled.wait(left)

    def _reload(self, state: _QuotaState, key_id: str, start: datetime, end: datetime) -> None:
        """Replace the count with the committed texts of the window ``start``..``end``, plus
        the window's texts answered without a row (which no read of the database sees)."""
        committed = self.store.texts_used(key_id, start, end)
        if state.window_start != start:
            state.unrecorded = 0  # a new window: the old one's unrecorded texts count no more
        state.used = committed + state.unrecorded
        state.window_start, state.loaded_at = start, self._clock()
        state.reads += 1

    def _unrecorded(self, key_id: str, start: datetime) -> int:
        """The key's texts of the window starting at ``start`` answered without a usage row."""
        with self._lock:
            state = self._quotas.get(key_id)
        if state is None:
            return 0
        with state.lock:
            return state.unrecorded if state.window_start == start else 0

    def _key(self, caller: Caller) -> KeyRecord:
        with self._lock:
            key = self._keys.get(caller.key_id)
        if key is None:
            key = self.store.get_key(caller.key_id)
            if key is None:
                raise AccessError(401, "invalid_key", "invalid API key: it no longer exists")
            with self._lock:
                self._keys[key.key_id] = key
        return key

    def _bucket(self, key: KeyRecord) -> TokenBucket:
        with self._lock:
            bucket = self._buckets.get(key.key_id)
            if bucket is None or bucket.rate != key.rate:
                bucket = self._buckets[key.key_id] = TokenBucket(key.rate, clock=self._clock)  # type: ignore[arg-type]
            return bucket

    def _state(self, key_id: str) -> _QuotaState:
        with self._lock:
            return self._quotas.setdefault(key_id, _QuotaState())

    # -- reporting -----------------------------------------------------------------------------------

    def usage_summary(self, caller: Caller, since: datetime | None, until: datetime | None) -> dict[str, Any]:
        """``GET /v1/usage``: the caller's totals between ``since`` and ``until``, and its quota now.

        ``texts`` and ``tokens`` count successful (2xx) requests, which is what is billed and what
        the quota counts; ``requests`` and ``by_status`` count every request.
        """
        key = self._key(caller)
        groups = self.store.usage_groups(key_id=caller.key_id, since=since, until=until)
        by_status: dict[str, int] = {}
        by_model: dict[str, dict[str, int]] = {}
        for g in groups:
            by_status[str(g.status)] = by_status.get(str(g.status), 0) + g.requests
            m = by_model.setdefault(g.product or "-", {"requests": 0, "texts": 0, "tokens": 0})
            m["requests"] += g.requests
            if billed(g.status):
                m["texts"] += g.texts
                m["tokens"] += g.tokens
        quota: dict[str, Any] | None = None
        if key.quota is not None:
            now = as_utc(self._now())
            start = key.quota.window_start(now)
            # what admit counts: the committed texts and those answered without a row (see _reload)
            end = key.quota.window_end(now)
            used = self.store.texts_used(key.key_id, start, end) + self._unrecorded(key.key_id, start)
            quota = {
                "limit": key.quota.limit,
                "period": key.quota.period,
                "used": used,
                "remaining": max(0, key.quota.limit - used),
                "resets_at": end.isoformat(),
            }
        return {
            "key": {"id": key.key_id, "name": key.name},
            "since": as_utc(since).isoformat() if since else None,
            "until": as_utc(until).isoformat() if until else None,
            "requests": sum(g.requests for g in groups),
            "texts": sum(m["texts"] for m in by_model.values()),
            "tokens": sum(m["tokens"] for m in by_model.values()),
            "by_status": dict(sorted(by_status.items())),
            "by_model": dict(sorted(by_model.items())),
            "rate": str(key.rate) if key.rate else None,
            "quota": quota,
        }

    # -- key management ------------------------------------------------------------------------------

    def create_key(
        self, name: str, *, rate: Rate | None, quota: Quota | None, admin: bool = False
    ) -> tuple[KeyRecord, str]:
        """Create a key; returns its record and the plain token, which is never available again.

        A quota belongs to a key (its id), not to its name: a key replacing a revoked one of the
        same name counts its own quota from zero, while ``tunelab usage --key NAME`` totals both.
        That is logged as a one-line note (on stderr for ``tunelab keys create``).
        """
        new = make_token()
        name = check_key_name(name)
        # Looked up before the key is made: a failure afterwards would lose its token.
        keys = self.store.list_keys()
        owner = next((k for k in keys if k.key_id == name), None)
        if owner is not None:
            # `keys revoke NAME` and `usage --key NAME` read an id first: a key named after another's
            # id made `keys revoke` revoke that other key (the admin key, in the review's case)
            raise DuplicateKeyError(f"key name {name!r} is the id of key {owner.name!r}; choose another name")
        replaces = quota is not None and any(k.name == name and k.revoked_at is not None for k in keys)
        record = self.store.create_key(
            key_id=new.key_id,
            name=name,
            secret_hash=new.secret_hash,
            admin=admin,
            rate=rate,
            quota=quota,
        )
        if replaces:  # implies a quota
            log.warning(
                "note: key %r replaces a revoked key of that name; a quota belongs to a key (its id), so "
                "this one counts its quota of %s from zero, whatever the revoked one used %s "
                "(`tunelab usage --key %s` totals both)",
                Unmasked(record.name),  # the operator's name for it, as the command takes it
                quota,
                _THIS[quota.period],
                Unmasked(record.name),
            )
        return record, new.token

    def list_keys(self) -> list[KeyRecord]:
        return self.store.list_keys()

    def revoke_key(self, name_or_id: str) -> KeyRecord:
        """Revoke by name or id; the key is refused from the next request on."""
        record = self.store.revoke_key(name_or_id)
        with self._lock:
            self._keys.pop(record.key_id, None)
            self._buckets.pop(record.key_id, None)
            self._quotas.pop(record.key_id, None)
        return record
