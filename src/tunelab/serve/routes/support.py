"""``/v1/apps/support``: talk to a support bot, and the agents' side of its hand-offs.

* ``POST /v1/apps/support/{bot}/messages`` ``{"conversation_id", "text"}``: the bot's reply. The
  conversation's earlier messages (kept ``conversation_ttl_s``) are its context; a hand-off stores
  a ticket (and queues it for the ``--handoff-webhook``). Billed like one predict text, the usage
  row naming the app (``support``) and the bot.
* ``GET /v1/apps/support/tickets`` (``?status=open&bot=bank``), ``GET .../tickets/{id}``,
  ``POST .../tickets/{id}/claim``, ``POST .../tickets/{id}/resolve`` ``{"intent"}`` or
  ``{"answer"}``: the agents' queue. A resolution is stored as a labelled example for
  ``tunelab app support export-feedback``.

Conversations and tickets belong to the key that sent the messages: a key sees and handles only
its own (another key's ticket is a 404), an admin key every ticket. The message route checks in
the order of cost, like predict: body size (as declared), key (before the body is read), JSON,
schema, the key's rate, bot, text length,
quota, then the database and the bot (which runs in its batcher's thread, never on the event loop).
The ticket routes take the key's rate first too (no quota: they bill no texts).
"""

from __future__ import annotations

import contextlib
import difflib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from tunelab.serve.conversations import new_conversation_id
from tunelab.serve.deps import Context, MaybeCaller, State
from tunelab.serve.request_limits import RequestLimitError
from tunelab.serve.responses import AUTH, JSON_BODY, error_responses
from tunelab.serve.store.support import Ticket
from tunelab.serve.support_schemas import (
    BotInfo,
    ClaimRequest,
    MessageRequest,
    MessageResponse,
    PassageOut,
    ResolveRequest,
    SupportInfo,
    TicketList,
    TicketOut,
)

router = APIRouter(prefix="/apps/support", tags=["support"])

MESSAGE_ERRORS = error_responses(
    *AUTH,
    *JSON_BODY,
    404,
    429,
    s404="unknown bot",
    s413="body over the server's --max-body",
    s422="invalid body: an empty text, a text over the character limit, a bad conversation_id",
    s503="the database is unreachable, or usage could not be recorded (nothing was billed)",
)
# 429 on every ticket route: each takes the key's rate first (a limited key's 404s counted too)
TICKET_ERRORS = error_responses(*AUTH, 404, 422, 429, s404="no such ticket (or another key's)")
CHANGE_ERRORS = error_responses(
    *AUTH,
    *JSON_BODY,
    404,
    409,
    429,
    s404="no such ticket (or another key's)",
    s409="claimed by another agent, or already resolved",
)
RESOLVE_ERRORS = error_responses(
    *AUTH,
    *JSON_BODY,
    404,
    409,
    429,
    s404="no such ticket (or another key's)",
    s409="claimed by another agent, or already resolved",
    s422='invalid body, or an intent the bot does not know (unknown_intent; "new_intent": true adds one)',
)
TicketId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_]{1,100}$", description="the ticket's id, e.g. tk_5c0f...")
]


async def _admit_rate(state: Any, caller: Any) -> None:
    """The key's rate, first thing in each ticket route, as the message route and the other apps
    take it: the ticket routes never took it, so a key at 1/min could list, read, claim and resolve
    tickets without limit, each a database query (README: the rate is taken on every app route)."""
    if caller is not None:
        await run_in_threadpool(state.access.admit_rate, caller)


def _owner(caller: Any) -> str:
    """Whose conversations: the key's id, or ``""`` for anonymous requests under ``--no-auth``."""
    return caller.key_id if caller is not None else ""


def _scope(caller: Any) -> str | None:
    """The tickets a caller may handle: an admin key every one (None), another key its own."""
    return None if getattr(caller, "admin", False) else _owner(caller)


def _agent(given: str | None, caller: Any) -> str:
    return given or (caller.name if caller is not None else "anonymous")


def _check_length(text: str, server_limit: int, served: Any) -> None:
    """422 for a text over the server's ``--max-chars`` or over what the bot itself takes.

    The bot's own limit (``max_message_chars``, optional) is checked here because the bot would
    raise inside its batcher, which the route can only answer as a 500.
    """
    bot_limit = getattr(served.bot, "max_message_chars", None)
    if isinstance(bot_limit, int) and bot_limit < server_limit:
        limit, says = bot_limit, f"bot {served.name!r} takes at most {bot_limit}"
    else:
        limit, says = server_limit, f"the limit is max_chars_per_text={server_limit}"
    if len(text) > limit:
        raise RequestLimitError(f"text has {len(text)} characters; {says}", status=422, code="text_too_long")


def _check_intent(intent: str, bot: str, bots: Any) -> None:
    """422 for a resolution's intent the ticket's bot does not know (``new_intent`` skips this).

    The intent becomes the example's label in ``export-feedback``, so a typo would silently
    become a new class of the next model.
    """
    opt_in = 'send "new_intent": true to store it as given'
    if bot not in bots:
        raise RequestLimitError(
            f"intent {intent!r}: bot {bot!r} is not served here, so the intent cannot be checked; {opt_in}",
            status=422,
            code="unknown_intent",
        )
    intents = getattr(bots.get(bot).bot, "intents", None)
    if intents is None or intent in intents:  # a bot that does not list its intents is not checked
        return
    close = difflib.get_close_matches(intent, list(intents), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise RequestLimitError(
        f"intent {intent!r} is not one of bot {bot!r}'s intents{hint}: {', '.join(intents)}; fix it, "
        f"or {opt_in} (a new intent)",
        status=422,
        code="unknown_intent",
    )


def _ticket_out(ticket: Ticket) -> TicketOut:
    return TicketOut.model_validate(ticket.to_dict())


@router.get("", response_model=SupportInfo, responses=error_responses(*AUTH, 429))
async def support_info(state: State, caller: MaybeCaller) -> SupportInfo:
    """The bots this server answers for (``source``, the bot folder, for admin keys only)."""
    await _admit_rate(state, caller)  # the key's rate, as on every app route (the README says so)
    admin = bool(getattr(caller, "admin", False))
    return SupportInfo(
        bots=[
            BotInfo(name=b.name, source=b.source if admin else None, loaded_at=b.loaded_at)
            for b in state.bots.all()
        ],
        conversation_ttl_s=state.settings.conversation_ttl_s,
        webhook=state.settings.handoff_webhook is not None,
    )


@router.post("/{bot}/messages", response_model=MessageResponse, responses=MESSAGE_ERRORS)  # type: ignore[arg-type]
async def message(
    bot: str, body: MessageRequest, state: State, ctx: Context, caller: MaybeCaller
) -> MessageResponse:
    """The bot's reply to one message of a conversation.

    ``kind`` says what the bot did: ``answer`` (the intent's answer), ``knowledge`` (the best
    passages of the knowledge base, in ``passages``) or ``handoff`` (a person takes over: the
    ticket is ``handoff_id``). ``used_context`` is true when the earlier messages of the
    conversation were needed to resolve this one. Without ``conversation_id`` a new conversation
    starts; send the returned id with the next message.
    """
    ctx.texts = 1
    if caller is not None:
        # The key's rate first, as predict takes it: taken only at admission, after the bot's name
        # and the text's length were checked, a key at 1/min could send 404s and 422s without limit.
        await run_in_threadpool(state.access.admit_rate, caller)
    served = state.bots.get(bot)  # 404 naming the served bots
    _check_length(body.text, state.settings.max_chars_per_text, served)
    # Each key's messages waiting or running are capped like predict's texts (--max-in-flight), and
    # wait in the key's own lane of the bot's batcher, so one key's burst cannot hold others back.
    holding = (
        state.in_flight.hold(caller.key_id, caller.name, 1)
        if caller is not None
        else contextlib.nullcontext()
    )
    with holding:
        if caller is not None:
            await run_in_threadpool(
                lambda: state.access.admit(caller, 1, request_id=ctx.request_id, rate=False)
            )
        owner, conversation_id = _owner(caller), body.conversation_id or new_conversation_id()
        conversations = state.conversations
        # One message of a conversation at a time, so a quick follow-up is read with the message
        # before it (stored at the end of this block).
        async with conversations.turn(bot=served.name, owner=owner, conversation_id=conversation_id):
            context = await run_in_threadpool(
                lambda: conversations.context(bot=served.name, owner=owner, conversation_id=conversation_id)
            )
            reply = await served.reply(
                body.text, context.history, lane=None if caller is None else caller.key_id
            )
            ctx.outcome = str(reply.kind)
            webhook, access = state.webhook, state.access
            stored: list[Ticket | None] = [None]

            def store(usage: Any = None) -> None:
                stored[0] = conversations.record(
                    bot=served.name,
                    owner=owner,
                    conversation_id=conversation_id,
                    text=body.text,
                    reply=reply,
                    context=context,
                    outbox=webhook is not None,
                    usage=usage,
                )

            def store_and_bill() -> None:
                # The turn, ticket and outbox row commit with the message's usage row, in one transaction:
                # had the ticket been committed first and the usage row failed (the middleware's 503 "try
                # again"), the client's retry would have made a second ticket and a second webhook.
                if access is None:
                    store()
                    return
                access.record(
                    caller=caller,
                    model=served.name,
                    version=None,
                    texts=1,
                    tokens=0,
                    status=200,
                    latency_ms=round(ctx.elapsed() * 1000, 3),
                    request_id=ctx.request_id,
                    app="support",
                    write=store,
                )
                ctx.usage_recorded = True

            await run_in_threadpool(store_and_bill)
    ticket = stored[0]
    if ticket is not None and webhook is not None:
        webhook.wake()
    return MessageResponse(
        bot=served.name,
        conversation_id=conversation_id,
        reply=reply.reply,
        kind=reply.kind,
        intent=reply.intent,
        confidence=float(reply.confidence),
        passages=[PassageOut.model_validate(p) for p in reply.passages],
        handoff_id=ticket.ticket_id if ticket is not None else None,
        used_context=bool(reply.used_context),
    )


@router.get("/tickets", response_model=TicketList, responses=error_responses(*AUTH, 422, 429))
async def list_tickets(
    state: State,
    caller: MaybeCaller,
    status: Annotated[Literal["open", "claimed", "resolved"] | None, Query(description="only these")] = None,
    bot: Annotated[str | None, Query(pattern=r"^[^\x00]{1,200}$", description="only this bot's")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TicketList:
    """The caller's tickets (an admin key's: everyone's), oldest first: the queue order."""
    await _admit_rate(state, caller)
    tickets = await run_in_threadpool(
        lambda: state.store.list_tickets(owner=_scope(caller), bot=bot, status=status, limit=limit)
    )
    return TicketList(tickets=[_ticket_out(t) for t in tickets])


@router.get("/tickets/{ticket_id}", response_model=TicketOut, responses=TICKET_ERRORS)
async def get_ticket(ticket_id: TicketId, state: State, caller: MaybeCaller) -> TicketOut:
    """One ticket: the conversation so far, the bot's reason and candidates, and its status."""
    await _admit_rate(state, caller)
    ticket = await run_in_threadpool(lambda: state.store.get_ticket(ticket_id, owner=_scope(caller)))
    return _ticket_out(ticket)


@router.post("/tickets/{ticket_id}/claim", response_model=TicketOut, responses=CHANGE_ERRORS)
async def claim_ticket(
    ticket_id: TicketId, state: State, caller: MaybeCaller, body: ClaimRequest | None = None
) -> TicketOut:
    """Take an open ticket (``agent``: who, default the key's name); claiming it again is a no-op."""
    await _admit_rate(state, caller)
    agent = _agent(body.agent if body else None, caller)
    now = state.conversations.now()
    ticket = await run_in_threadpool(
        lambda: state.store.claim_ticket(ticket_id, agent=agent, now=now, owner=_scope(caller))
    )
    return _ticket_out(ticket)


@router.post("/tickets/{ticket_id}/resolve", response_model=TicketOut, responses=RESOLVE_ERRORS)
async def resolve_ticket(
    ticket_id: TicketId, body: ResolveRequest, state: State, caller: MaybeCaller
) -> TicketOut:
    """Close a ticket that is open or claimed by this agent, with the right ``intent`` (the label
    the message gets in ``export-feedback``) and/or the ``answer`` the agent gave.

    The intent must be one of the bot's (a 422 lists them), unless ``new_intent`` is true.
    """
    await _admit_rate(state, caller)
    agent = _agent(body.agent, caller)
    if body.intent is not None and not body.new_intent:
        ticket = await run_in_threadpool(lambda: state.store.get_ticket(ticket_id, owner=_scope(caller)))
        _check_intent(body.intent, ticket.bot, state.bots)
    now = state.conversations.now()
    ticket = await run_in_threadpool(
        lambda: state.store.resolve_ticket(
            ticket_id, agent=agent, now=now, intent=body.intent, answer=body.answer, owner=_scope(caller)
        )
    )
    return _ticket_out(ticket)
