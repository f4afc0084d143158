"""What the support bot (issue 10) keeps in the service's database: conversations, hand-off tickets,
the webhook outbox and the agents' resolutions, in both backends (the SQL is shared, like ``sql.py``).

* ``tunelab_support_turns``: each message of a conversation with the kind and intent of its reply,
  its time ``at`` and ``expires_at``. Given the running server's time-to-live, expired turns are
  those older than it (``at`` index): a TTL lowered and restarted applies to the turns already
  stored, whose ``expires_at`` was fixed by the TTL they were written under (kept for older callers,
  which pass no TTL). Expired turns are never read as context, and ``purge_turns`` deletes them in
  one range delete, however many conversations there are.
* ``tunelab_support_tickets``: a hand-off, with a copy of the conversation so far (it outlives the
  turns' time-to-live), the earlier messages the bot was given with it (``history``), the bot's
  reason and top candidates; ``open`` -> ``claimed`` -> ``resolved``.
* ``tunelab_support_outbox``: one row per ticket to POST to the webhook; a worker leases due rows,
  so two servers on one PostgreSQL never post the same ticket at once, and marks them delivered.
* ``tunelab_support_feedback``: one labelled example per resolved ticket (``export-feedback``).

Conversations and tickets belong to an ``owner``: the id of the API key that sent the messages
(``""`` for anonymous requests under ``--no-auth``), so a caller can neither continue nor read
another key's conversations by guessing an id. Status changes are conditional ``UPDATE``s checked by
their row count: two agents claiming one ticket at once cannot both win, on either backend.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tunelab.errors import TunelabError
from tunelab.serve.limits import as_utc

if TYPE_CHECKING:
    from tunelab.serve.store.base import UsageRecord
    from tunelab.serve.store.sql import Connection, Cursor

STATUSES = ("open", "claimed", "resolved")

SUPPORT_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tunelab_support_turns (
        id {serial} PRIMARY KEY,
        bot TEXT NOT NULL,
        owner TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        text TEXT NOT NULL,
        reply TEXT NOT NULL,
        kind TEXT NOT NULL,
        intent TEXT,
        at {ts} NOT NULL,
        expires_at {ts} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS tunelab_support_turns_conv"
    " ON tunelab_support_turns (bot, owner, conversation_id, at)",
    "CREATE INDEX IF NOT EXISTS tunelab_support_turns_expiry ON tunelab_support_turns (expires_at)",
    "CREATE INDEX IF NOT EXISTS tunelab_support_turns_at ON tunelab_support_turns (at)",
    """CREATE TABLE IF NOT EXISTS tunelab_support_tickets (
        ticket_id TEXT PRIMARY KEY,
        bot TEXT NOT NULL,
        owner TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        text TEXT NOT NULL,
        conversation TEXT NOT NULL,
        reason TEXT NOT NULL,
        candidates TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at {ts} NOT NULL,
        updated_at {ts} NOT NULL,
        claimed_by TEXT,
        claimed_at {ts},
        resolved_by TEXT,
        resolved_at {ts},
        resolution_intent TEXT,
        resolution_answer TEXT,
        history TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS tunelab_support_tickets_owner"
    " ON tunelab_support_tickets (owner, status, created_at)",
    "CREATE INDEX IF NOT EXISTS tunelab_support_tickets_bot"
    " ON tunelab_support_tickets (bot, status, created_at)",
    """CREATE TABLE IF NOT EXISTS tunelab_support_outbox (
        ticket_id TEXT PRIMARY KEY,
        created_at {ts} NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at {ts},
        delivered_at {ts},
        gave_up_at {ts},
        last_error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS tunelab_support_outbox_due ON tunelab_support_outbox (next_attempt_at)"
    " WHERE delivered_at IS NULL AND gave_up_at IS NULL",
    """CREATE TABLE IF NOT EXISTS tunelab_support_feedback (
        id {serial} PRIMARY KEY,
        ticket_id TEXT NOT NULL UNIQUE,
        bot TEXT NOT NULL,
        owner TEXT NOT NULL,
        text TEXT NOT NULL,
        context TEXT NOT NULL,
        intent TEXT,
        answer TEXT,
        resolved_by TEXT NOT NULL,
        at {ts} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS tunelab_support_feedback_bot ON tunelab_support_feedback (bot, at)",
)

# Columns added to the support tables after their first release: (table, column, type), added to
# older databases on open with the store's other ``ADDED_COLUMNS`` (``tunelab.serve.store.sql``).
SUPPORT_ADDED_COLUMNS = (("tunelab_support_tickets", "history", "TEXT"),)

TURN_COLUMNS = "bot, owner, conversation_id, text, reply, kind, intent, at, expires_at"
TICKET_COLUMNS = (
    "ticket_id, bot, owner, conversation_id, text, conversation, reason, candidates, status, created_at,"
    " updated_at, claimed_by, claimed_at, resolved_by, resolved_at, resolution_intent, resolution_answer,"
    " history"
)
FEEDBACK_COLUMNS = "ticket_id, bot, owner, text, context, intent, answer, resolved_by, at"


def json_time(moment: datetime) -> str:
    """``moment`` in UTC as pydantic writes a datetime to JSON ("...T13:29:16.832265Z").

    What a ticket holds as text (its conversation's ``at``) is written so: the ticket's own times
    go through its pydantic model, and one body read "+00:00" in one field and "Z" in the next.
    """
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def _json_at(turn: dict[str, Any]) -> dict[str, Any]:
    """A stored conversation turn with its ``at`` as ``json_time`` writes it: tickets stored before
    wrote "+00:00"; a value that is not a time is left as it is."""
    at = turn.get("at")
    if not isinstance(at, str) or at.endswith("Z"):
        return turn
    try:
        return {**turn, "at": json_time(datetime.fromisoformat(at))}
    except ValueError:
        return turn


class TicketNotFoundError(TunelabError):
    """No ticket with this id, or not one the caller may see (HTTP 404)."""

    code = "unknown_ticket"


class TicketStateError(TunelabError):
    """A claim or resolution the ticket's status does not allow (HTTP 409)."""

    code = "ticket_conflict"


@dataclass(frozen=True)
class Turn:
    """One user message of a conversation and what the bot made of it."""

    bot: str
    owner: str
    conversation_id: str
    text: str
    reply: str
    kind: str
    intent: str | None
    at: datetime
    expires_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The view a ticket keeps: no owner, no expiry."""
        return {
            "text": self.text,
            "reply": self.reply,
            "kind": self.kind,
            "intent": self.intent,
            "at": json_time(self.at),
        }


@dataclass(frozen=True)
class Ticket:
    """A hand-off to a person: what was said, why the bot gave up, and what it would have guessed."""

    ticket_id: str
    bot: str
    owner: str
    conversation_id: str
    text: str  # the message that was handed off
    conversation: list[dict[str, Any]]  # Turn.to_dict() of the conversation so far, oldest first
    reason: str
    candidates: list[dict[str, Any]]  # [{"intent", "confidence"}], best first
    status: str
    created_at: datetime
    updated_at: datetime
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    resolution_intent: str | None = None
    resolution_answer: str | None = None
    # The earlier user messages the bot was given with ``text`` (its ``history``), oldest first: what
    # the resolution's training example must be read with. Not the conversation copy: that holds up
    # to ``ticket_turns`` turns for the agent, while the bot read ``history_turns`` (0: none). None
    # for a ticket stored before this was kept.
    history: list[str] | None = None

    def read_with(self) -> list[str]:
        """The earlier messages the bot read the handed-off message with, oldest first.

        A ticket stored before ``history`` was kept falls back to its conversation copy without the
        handed-off message (the last turn): the best guess left, right whenever the server ran with
        ``ticket_turns`` > 1 and ``history_turns`` > 0.
        """
        if self.history is not None:
            return list(self.history)
        return [t["text"] for t in self.conversation[:-1]]

    @staticmethod
    def new_id() -> str:
        return f"tk_{uuid.uuid4().hex}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON an agent (and the webhook) gets; the owner is a key id, not shown."""

        def when(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "id": self.ticket_id,
            "bot": self.bot,
            "conversation_id": self.conversation_id,
            "text": self.text,
            "conversation": [_json_at(t) for t in self.conversation],
            "reason": self.reason,
            "candidates": self.candidates,
            "status": self.status,
            "created_at": when(self.created_at),
            "updated_at": when(self.updated_at),
            "claimed_by": self.claimed_by,
            "claimed_at": when(self.claimed_at),
            "resolved_by": self.resolved_by,
            "resolved_at": when(self.resolved_at),
            "resolution": (
                {"intent": self.resolution_intent, "answer": self.resolution_answer}
                if self.status == "resolved"
                else None
            ),
        }


@dataclass(frozen=True)
class Feedback:
    """An agent's resolution as a labelled example: ``text`` with ``intent`` (or only an ``answer``)."""

    ticket_id: str
    bot: str
    owner: str
    text: str
    context: list[str]  # the user's earlier messages the bot read ``text`` with, oldest first
    intent: str | None
    answer: str | None
    resolved_by: str
    at: datetime


@dataclass(frozen=True)
class Delivery:
    """A leased outbox row: the ticket to POST and how many attempts (this one included) it took."""

    ticket: Ticket
    attempts: int
    lease: datetime = field(repr=False)  # the lease's end: the next attempt time this worker holds


def _unexpired(now: datetime, ttl: timedelta | None) -> tuple[str, datetime]:
    """The column and the time a turn unexpired at ``now`` is after: ``at`` within ``ttl`` before
    ``now``, else (no TTL given) its ``expires_at`` after ``now``."""
    if ttl is None:
        return "expires_at", now
    return "at", now - ttl


class SupportSQL:
    """The support tables' queries, mixed into ``SQLStore`` (which supplies the members below)."""

    if TYPE_CHECKING:

        def _transaction(self, write: bool = True) -> AbstractContextManager[Connection]: ...
        def _exec(self, conn: Connection, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
        def _to_db(self, moment: datetime | None) -> Any: ...
        def _from_db(self, value: Any) -> datetime | None: ...
        def _insert_usage(self, conn: Connection, rec: UsageRecord) -> None: ...

    # -- rows ----------------------------------------------------------------------------------------

    def _turn(self, row: Sequence[Any]) -> Turn:
        bot, owner, conversation_id, text, reply, kind, intent, at, expires_at = row
        return Turn(
            bot=bot,
            owner=owner,
            conversation_id=conversation_id,
            text=text,
            reply=reply,
            kind=kind,
            intent=intent,
            at=self._from_db(at),  # type: ignore[arg-type]
            expires_at=self._from_db(expires_at),  # type: ignore[arg-type]
        )

    def _ticket(self, row: Sequence[Any]) -> Ticket:
        (tid, bot, owner, conv_id, text, conversation, reason, candidates, status, created, updated) = row[
            :11
        ]
        claimed_by, claimed_at, resolved_by, resolved_at, intent, answer, history = row[11:]
        return Ticket(
            ticket_id=tid,
            bot=bot,
            owner=owner,
            conversation_id=conv_id,
            text=text,
            conversation=json.loads(conversation),
            reason=reason,
            candidates=json.loads(candidates),
            status=status,
            created_at=self._from_db(created),  # type: ignore[arg-type]
            updated_at=self._from_db(updated),  # type: ignore[arg-type]
            claimed_by=claimed_by,
            claimed_at=self._from_db(claimed_at),
            resolved_by=resolved_by,
            resolved_at=self._from_db(resolved_at),
            resolution_intent=intent,
            resolution_answer=answer,
            history=None if history is None else json.loads(history),
        )

    # -- conversations -------------------------------------------------------------------------------

    def recent_turns(
        self,
        *,
        bot: str,
        owner: str,
        conversation_id: str,
        now: datetime,
        limit: int,
        ttl: timedelta | None = None,
    ) -> list[Turn]:
        """The conversation's last ``limit`` turns that have not expired at ``now``, oldest first.

        ``ttl``: the running server's time-to-live, which governs every turn (sent within ``ttl``
        before ``now``); without it, each turn's stored ``expires_at``.

        In the order they were stored (``id``), not by ``at``: the wall clock can step back, and a
        turn stamped before the previous one was then left out of the bot's history."""
        column, limit_at = _unexpired(now, ttl)
        sql = (
            f"SELECT {TURN_COLUMNS} FROM tunelab_support_turns WHERE bot = ? AND owner = ?"
            f" AND conversation_id = ? AND {column} > ? ORDER BY id DESC LIMIT ?"
        )
        params = [bot, owner, conversation_id, self._to_db(limit_at), int(limit)]
        with self._transaction(write=False) as conn:
            rows = self._exec(conn, sql, params).fetchall()
        return [self._turn(r) for r in reversed(rows)]

    def add_turn(
        self,
        turn: Turn,
        *,
        ticket: Ticket | None = None,
        outbox: bool = False,
        usage: UsageRecord | None = None,
    ) -> None:
        """Store a turn and, for a hand-off, its ticket (and outbox row): one transaction, so a
        ticket never exists without the turn that made it, nor a webhook row without its ticket.

        ``usage``, the message's usage row, is written in the same transaction: a message is
        stored (and its ticket sent) exactly when it is billed, so a client retrying after a
        failed usage write (a 503) does not leave a second ticket behind the first.
        """
        with self._transaction() as conn:
            if usage is not None:
                self._insert_usage(conn, usage)
            self._exec(
                conn,
                f"INSERT INTO tunelab_support_turns ({TURN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    turn.bot,
                    turn.owner,
                    turn.conversation_id,
                    turn.text,
                    turn.reply,
                    turn.kind,
                    turn.intent,
                    self._to_db(turn.at),
                    self._to_db(turn.expires_at),
                ],
            )
            if ticket is None:
                return
            self._exec(
                conn,
                f"INSERT INTO tunelab_support_tickets ({TICKET_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    ticket.ticket_id,
                    ticket.bot,
                    ticket.owner,
                    ticket.conversation_id,
                    ticket.text,
                    json.dumps(ticket.conversation, ensure_ascii=False),
                    ticket.reason,
                    json.dumps(ticket.candidates, ensure_ascii=False),
                    ticket.status,
                    self._to_db(ticket.created_at),
                    self._to_db(ticket.updated_at),
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None if ticket.history is None else json.dumps(ticket.history, ensure_ascii=False),
                ],
            )
            if outbox:
                self._exec(
                    conn,
                    "INSERT INTO tunelab_support_outbox (ticket_id, created_at, attempts, next_attempt_at)"
                    " VALUES (?, ?, 0, ?)",
                    [ticket.ticket_id, self._to_db(ticket.created_at), self._to_db(ticket.created_at)],
                )

    def purge_turns(self, now: datetime, ttl: timedelta | None = None) -> int:
        """Delete the turns expired at ``now`` (a range on an index); returns how many.

        ``ttl`` as in ``recent_turns``: a server restarted with a shorter one purges the turns
        written under the longer one as soon as they are older than it.
        """
        column, limit_at = _unexpired(now, ttl)
        with self._transaction() as conn:
            cursor = self._exec(
                conn, f"DELETE FROM tunelab_support_turns WHERE {column} <= ?", [self._to_db(limit_at)]
            )
            return max(0, int(cursor.rowcount))

    # -- tickets -------------------------------------------------------------------------------------

    def get_ticket(self, ticket_id: str, *, owner: str | None = None) -> Ticket:
        """The ticket, if ``owner`` is None (an admin) or owns it; else ``TicketNotFoundError``."""
        with self._transaction(write=False) as conn:
            return self._owned(conn, ticket_id, owner)

    def _owned(self, conn: Connection, ticket_id: str, owner: str | None) -> Ticket:
        row = self._exec(
            conn, f"SELECT {TICKET_COLUMNS} FROM tunelab_support_tickets WHERE ticket_id = ?", [ticket_id]
        ).fetchone()
        if row is None or (owner is not None and row[2] != owner):
            # Someone else's ticket is "not found" too: its existence is not the caller's business.
            raise TicketNotFoundError(f"no ticket {ticket_id!r} (GET /v1/apps/support/tickets lists them)")
        return self._ticket(row)

    def list_tickets(
        self,
        *,
        owner: str | None = None,
        bot: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[Ticket]:
        """Tickets, oldest first (the queue order), filtered by owner (None: all), bot and status."""
        clauses, params = [], []
        for clause, value in (("owner = ?", owner), ("bot = ?", bot), ("status = ?", status)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        sql = (
            f"SELECT {TICKET_COLUMNS} FROM tunelab_support_tickets{where}"
            " ORDER BY created_at, ticket_id LIMIT ?"
        )
        with self._transaction(write=False) as conn:
            rows = self._exec(conn, sql, [*params, int(limit)]).fetchall()
        return [self._ticket(r) for r in rows]

    def claim_ticket(self, ticket_id: str, *, agent: str, now: datetime, owner: str | None = None) -> Ticket:
        """``open`` -> ``claimed`` by ``agent``; claiming one's own claimed ticket again is a no-op.

        Raises:
            TicketNotFoundError: no such ticket for this owner.
            TicketStateError: claimed by another agent, or already resolved.
        """
        with self._transaction() as conn:
            ticket = self._owned(conn, ticket_id, owner)
            if ticket.status == "claimed" and ticket.claimed_by == agent:
                return ticket
            updated = self._exec(
                conn,
                "UPDATE tunelab_support_tickets SET status = 'claimed', claimed_by = ?, claimed_at = ?,"
                " updated_at = ? WHERE ticket_id = ? AND status = 'open'",
                [agent, self._to_db(now), self._to_db(now), ticket_id],
            ).rowcount
            if updated != 1:
                raise self._conflict(self._owned(conn, ticket_id, owner), "claim")
            return self._owned(conn, ticket_id, owner)

    def resolve_ticket(
        self,
        ticket_id: str,
        *,
        agent: str,
        now: datetime,
        intent: str | None,
        answer: str | None,
        owner: str | None = None,
    ) -> Ticket:
        """Resolve an open ticket, or one ``agent`` claimed, and store its labelled example.

        The ticket's update and the feedback row are one transaction: a resolution is never
        recorded without its example, nor twice (the feedback's ticket id is unique). The example's
        context is what the bot was given with the message (``Ticket.read_with``), so the next model
        is trained on the input this one classified.
        """
        if not intent and not answer:
            raise ValueError("a resolution needs an intent or an answer")
        with self._transaction() as conn:
            ticket = self._owned(conn, ticket_id, owner)
            updated = self._exec(
                conn,
                "UPDATE tunelab_support_tickets SET status = 'resolved', resolved_by = ?, resolved_at = ?,"
                " updated_at = ?, resolution_intent = ?, resolution_answer = ? WHERE ticket_id = ?"
                " AND (status = 'open' OR (status = 'claimed' AND claimed_by = ?))",
                [agent, self._to_db(now), self._to_db(now), intent, answer, ticket_id, agent],
            ).rowcount
            if updated != 1:
                raise self._conflict(self._owned(conn, ticket_id, owner), "resolve")
            context = ticket.read_with()
            self._exec(
                conn,
                f"INSERT INTO tunelab_support_feedback ({FEEDBACK_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    ticket_id,
                    ticket.bot,
                    ticket.owner,
                    ticket.text,
                    json.dumps(context, ensure_ascii=False),
                    intent,
                    answer,
                    agent,
                    self._to_db(now),
                ],
            )
            return self._owned(conn, ticket_id, owner)

    def _conflict(self, ticket: Ticket, action: str) -> TicketStateError:
        """Why ``action`` failed, read after the conditional update matched nothing."""
        if ticket.status == "resolved":
            when = f"{ticket.resolved_at:%Y-%m-%d %H:%M} UTC" if ticket.resolved_at else "earlier"
            return TicketStateError(
                f"ticket {ticket.ticket_id} is already resolved (by {ticket.resolved_by!r}, {when})"
            )
        since = f" since {ticket.claimed_at:%Y-%m-%d %H:%M} UTC" if ticket.claimed_at else ""
        return TicketStateError(
            f"cannot {action} ticket {ticket.ticket_id}: agent {ticket.claimed_by!r} claimed it{since}"
        )

    # -- feedback ------------------------------------------------------------------------------------

    def feedback(self, *, bot: str | None = None, since: datetime | None = None) -> list[Feedback]:
        """Resolutions as labelled examples, oldest first."""
        clauses, params = [], []
        if bot is not None:
            clauses.append("bot = ?")
            params.append(bot)
        if since is not None:
            clauses.append("at >= ?")
            params.append(self._to_db(since))
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        sql = f"SELECT {FEEDBACK_COLUMNS} FROM tunelab_support_feedback{where} ORDER BY at, id"
        with self._transaction(write=False) as conn:
            rows = self._exec(conn, sql, params).fetchall()
        return [
            Feedback(
                ticket_id=r[0],
                bot=r[1],
                owner=r[2],
                text=r[3],
                context=json.loads(r[4]),
                intent=r[5],
                answer=r[6],
                resolved_by=r[7],
                at=self._from_db(r[8]),  # type: ignore[arg-type]
            )
            for r in rows
        ]

    # -- webhook outbox ------------------------------------------------------------------------------

    def lease_deliveries(self, *, now: datetime, lease_s: float, limit: int = 10) -> list[Delivery]:
        """Take up to ``limit`` due outbox rows for ``lease_s`` seconds and count the attempt.

        A row is taken by moving its ``next_attempt_at`` to the lease's end, conditioned on the
        value just read: of two workers reading the same row only one update matches, and a worker
        that dies mid-delivery leaves a row that falls due again when the lease ends.
        """
        lease = now + timedelta(seconds=lease_s)
        taken: list[Delivery] = []
        with self._transaction() as conn:
            due = self._exec(
                conn,
                "SELECT ticket_id, next_attempt_at, attempts FROM tunelab_support_outbox"
                " WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at LIMIT ?",
                [self._to_db(now), int(limit)],
            ).fetchall()
            for ticket_id, next_at, attempts in due:
                won = self._exec(
                    conn,
                    "UPDATE tunelab_support_outbox SET next_attempt_at = ?, attempts = attempts + 1"
                    " WHERE ticket_id = ? AND next_attempt_at = ? AND delivered_at IS NULL",
                    [self._to_db(lease), ticket_id, next_at],
                ).rowcount
                if won == 1:
                    taken.append(Delivery(self._owned(conn, ticket_id, None), int(attempts) + 1, lease))
        return taken

    def mark_delivered(self, ticket_id: str, *, now: datetime) -> None:
        with self._transaction() as conn:
            self._exec(
                conn,
                "UPDATE tunelab_support_outbox SET delivered_at = ?, last_error = NULL WHERE ticket_id = ?",
                [self._to_db(now), ticket_id],
            )

    def mark_failed(
        self,
        ticket_id: str,
        *,
        error: str,
        retry_at: datetime | None,
        now: datetime,
        lease: datetime | None = None,
    ) -> bool:
        """Record a failed attempt: retry at ``retry_at``, or (None) give up on this ticket.

        Args:
            lease: the end of the lease the failed attempt ran under (``Delivery.lease``). When
                given, the row is changed only while it still holds that lease: a worker whose
                lease ran out must not move another worker's lease (nor give the row up).

        Returns:
            Whether the row was changed (False: delivered, or leased again by another worker).
        """
        sql = (
            "UPDATE tunelab_support_outbox SET last_error = ?, next_attempt_at = ?, gave_up_at = ?"
            " WHERE ticket_id = ? AND delivered_at IS NULL"
        )
        params = [error[:500], self._to_db(retry_at), None if retry_at else self._to_db(now), ticket_id]
        if lease is not None:
            sql += " AND next_attempt_at = ?"
            params.append(self._to_db(lease))
        with self._transaction() as conn:
            return int(self._exec(conn, sql, params).rowcount) == 1

    def outbox(self) -> list[dict[str, Any]]:
        """Every outbox row (status pages and tests): ticket id, attempts, times, last error."""
        sql = (
            "SELECT ticket_id, attempts, next_attempt_at, delivered_at, gave_up_at, last_error"
            " FROM tunelab_support_outbox ORDER BY created_at, ticket_id"
        )
        with self._transaction(write=False) as conn:
            rows = self._exec(conn, sql).fetchall()
        return [
            {
                "ticket_id": r[0],
                "attempts": int(r[1]),
                "next_attempt_at": self._from_db(r[2]),
                "delivered_at": self._from_db(r[3]),
                "gave_up_at": self._from_db(r[4]),
                "last_error": r[5],
            }
            for r in rows
        ]


__all__ = [
    "STATUSES",
    "SUPPORT_ADDED_COLUMNS",
    "SUPPORT_SCHEMA",
    "Delivery",
    "Feedback",
    "SupportSQL",
    "Ticket",
    "TicketNotFoundError",
    "TicketStateError",
    "Turn",
]
