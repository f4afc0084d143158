"""Conversations of the support bot: the context a message is read with, and what it leaves behind.

Each message is stored as a turn that expires ``conversation_ttl_s`` after it was sent, by the TTL
the server runs with now (a restart with a lower one applies to the turns stored before). A message
is answered with the conversation's unexpired earlier user messages as the bot's ``history`` (the
last ``history_turns``, oldest first); a reply of kind ``handoff`` also stores a ticket holding a
copy of the conversation so far (at most ``ticket_turns``), which outlives the turns, and the
``history`` the bot was given: the two limits differ, and the resolution's training example must be
read as the bot read it, not as the agent's copy shows it. Expired turns are deleted by ``purge``,
which the server runs every minute (or every TTL, if shorter).

Messages of one conversation are answered one at a time (``turn``): a client that sends its next
message before the reply to the last one came would otherwise have it read without that message,
which was not stored yet. Messages of different conversations are answered concurrently (and share
the bot's batches). The lock is the server process's: one ``tunelab serve`` process per store.

All methods but ``run_purger`` and ``turn`` block on the database: call them from a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool

from tunelab.serve.store.support import Ticket, Turn

log = logging.getLogger("tunelab.serve.support")

PURGE_EVERY_S = 60.0


@dataclass(frozen=True)
class Context:
    """What the store knows of a conversation before a message: its turns, oldest first."""

    turns: list[Turn]
    history: list[str]  # the user messages passed to the bot


class KeyedLocks:
    """One ``asyncio.Lock`` per key, kept only while a holder or waiter of that key exists.

    Written here because asyncio has no keyed lock, and a dict of locks that never shrinks would
    grow by one entry per conversation ever seen.
    """

    def __init__(self) -> None:
        self._locks: dict[tuple[str, ...], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, ...]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


def new_conversation_id() -> str:
    return f"conv_{uuid.uuid4().hex}"


class Conversations:
    """Reads and writes conversations and tickets in ``store`` under ``settings``' limits."""

    def __init__(self, store: Any, settings: Any, *, now: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.ttl = timedelta(seconds=float(settings.conversation_ttl_s))
        self.history_turns = int(settings.history_turns)
        self.ticket_turns = int(settings.ticket_turns)
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))
        self._purger: asyncio.Task[None] | None = None
        self._turns = KeyedLocks()

    def turn(
        self, *, bot: str, owner: str, conversation_id: str
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Held from reading a message's context until its turn is stored (see the module's doc)."""
        return self._turns.hold((bot, owner, conversation_id))

    def context(self, *, bot: str, owner: str, conversation_id: str) -> Context:
        """The conversation's unexpired turns (up to ``ticket_turns - 1``) and the bot's history."""
        turns = self.store.recent_turns(
            bot=bot,
            owner=owner,
            conversation_id=conversation_id,
            now=self.now(),
            limit=max(self.ticket_turns - 1, self.history_turns),
            ttl=self.ttl,
        )
        history = [t.text for t in turns[-self.history_turns :]] if self.history_turns else []
        return Context(turns=turns, history=history)

    def record(
        self,
        *,
        bot: str,
        owner: str,
        conversation_id: str,
        text: str,
        reply: Any,
        context: Context,
        outbox: bool,
        usage: Any = None,
    ) -> Ticket | None:
        """Store the message as a turn and, for a hand-off, its ticket (one transaction, with the
        message's usage row when given: see ``add_turn``)."""
        now = self.now()
        turn = Turn(
            bot=bot,
            owner=owner,
            conversation_id=conversation_id,
            text=text,
            reply=str(reply.reply),
            kind=str(reply.kind),
            intent=reply.intent,
            at=now,
            # kept for older readers: this server's context and purge go by ``at`` and the running TTL
            expires_at=now + self.ttl,
        )
        ticket = None
        if reply.kind == "handoff":
            earlier = context.turns[-(self.ticket_turns - 1) :] if self.ticket_turns > 1 else []
            ticket = Ticket(
                ticket_id=Ticket.new_id(),
                bot=bot,
                owner=owner,
                conversation_id=conversation_id,
                text=text,
                conversation=[t.to_dict() for t in [*earlier, turn]],
                reason=str(reply.reason),
                candidates=[dict(c) for c in reply.candidates],
                status="open",
                created_at=now,
                updated_at=now,
                history=list(context.history),
            )
        self.store.add_turn(turn, ticket=ticket, outbox=outbox and ticket is not None, usage=usage)
        return ticket

    def purge(self) -> int:
        """Delete the expired turns; returns how many."""
        return int(self.store.purge_turns(self.now(), ttl=self.ttl))

    # -- the purge task ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._purger is None:
            self._purger = asyncio.get_running_loop().create_task(self._purge_loop(), name="purge-turns")

    async def close(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None

    async def _purge_loop(self) -> None:
        every = min(PURGE_EVERY_S, self.ttl.total_seconds())
        while True:
            await asyncio.sleep(every)
            try:
                purged = await run_in_threadpool(self.purge)
            except Exception:  # the database may be down for a while: try again next time
                log.exception("purging expired conversation turns failed")
                continue
            if purged:
                log.debug("purged %d expired conversation turns", purged)


__all__ = ["Context", "Conversations", "KeyedLocks", "new_conversation_id"]
