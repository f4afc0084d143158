"""Support bot review fixes (fifth round): a knowledge reply read after another topic, the
conversation TTL of a restarted server, and the time format of a ticket's conversation.

The bot tests run the app's real ``Bot`` over a stand-in intent model and knowledge index (no
training); the store tests run ``Conversations`` over SQLite and a real PostgreSQL server
(``postgres_url`` in tests/conftest.py), with an injected clock instead of sleeping.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from test_serve_support_store import store  # noqa: F401  (a fixture: SQLite and PostgreSQL)

from tunelab.apps.support.answers import read_answers
from tunelab.apps.support.bot import Bot
from tunelab.apps.support.config import BotConfig
from tunelab.apps.support.knowledge import Hit, Passage
from tunelab.serve.conversations import Conversations
from tunelab.serve.store.support import Ticket, Turn
from tunelab.serve.support_schemas import TicketOut

# -- 1. a knowledge reply read after another topic ----------------------------------------------------

INTENTS = ["sports", "food", "weather"]
FORECAST = Passage("The forecast is updated every hour.", "Weather forecast", "faq.md:1", "weather")
PRICES = Passage("Children's tickets are half price.", "Ticket prices", "faq.md:9", "sports")
FOOTBALL = "I bought football tickets for \u20ac25"


class TopicModel:
    """Three intents: "football" reads as sports at 0.99 (a previous message's topic wins), "rain"
    as weather at 0.78, anything else as sports at 0.78: both below the default threshold of 0.90."""

    labels = SimpleNamespace(names=INTENTS)

    def logits(self, texts: list[str]) -> np.ndarray:
        def one(text: str) -> list[float]:
            if "football" in text:
                return [5.0, 0.0, 0.0]
            return [0.0, 0.0, 2.0] if "rain" in text else [2.0, 0.0, 0.0]

        return np.array([one(t) for t in texts])  # (N, 3)


class WordIndex:
    """A knowledge index finding a passage by a word of the query at a fixed similarity."""

    def __init__(self, passages: dict[str, tuple[Passage, float]]) -> None:
        self.by_word = passages

    def search_many(self, texts: list[str], k: int = 3) -> list[list[Hit]]:
        found = [[Hit(p, s) for word, (p, s) in self.by_word.items() if word in t.lower()] for t in texts]
        return [sorted(hits, key=lambda h: -h.score)[:k] for hits in found]


def topic_bot(folder: Path, index: WordIndex) -> Bot:
    """Templates for sports and food only; weather is answered from the knowledge base."""
    (folder / "answers.yaml").write_text(
        "fallback: 'Prices are at the desk.'\nslots:\n  price: '[$\u20ac]\\d+'\n"
        "intents:\n  sports: 'Tickets cost {price} at the desk.'\n  food: 'Dinner from 6 pm.'\n",
        encoding="utf-8",
    )
    answers = read_answers(folder / "answers.yaml")
    return Bot(folder, BotConfig(name="demo", run="r"), TopicModel(), answers, index)  # type: ignore[arg-type]


def test_a_passage_tagged_with_another_intent_is_not_replaced_by_the_previous_topics_template(
    tmp_path: Path,
) -> None:
    """The joined reading's top intent was compared with the classifier's guess alone (sports at
    0.78, below its threshold), not with the weather the passage answers: after a football message
    the forecast question got "Tickets cost €25 at the desk."."""
    bot = topic_bot(tmp_path, WordIndex({"forecast": (FORECAST, 0.7)}))
    message = "when do you update the weather forecast"
    alone = bot.reply(message)
    assert (alone.kind, alone.intent, alone.candidates[0]["intent"]) == ("knowledge", "weather", "sports")
    after = bot.reply(message, history=[FOOTBALL])
    assert (after.kind, after.intent, after.used_context) == ("knowledge", "weather", False), after
    assert after.reply == FORECAST.text and "previous message" not in after.reason


def test_the_template_of_the_intent_a_tagged_passage_serves_still_replaces_it(tmp_path: Path) -> None:
    """The other side of the rule: the joined reading giving the passage's own intent's template
    wins, even when the classifier's guess alone was another intent (weather at 0.78 here)."""
    bot = topic_bot(tmp_path, WordIndex({"tickets": (PRICES, 0.8)}))
    message = "and the tickets if it rains?"
    alone = bot.reply(message)
    assert (alone.kind, alone.intent, alone.candidates[0]["intent"]) == ("knowledge", "sports", "weather")
    after = bot.reply(message, history=[FOOTBALL])
    assert (after.kind, after.intent, after.used_context) == ("answer", "sports", True), after
    assert after.reply.endswith("Tickets cost \u20ac25 at the desk."), after.reply


# -- 2. the conversation TTL of a restarted server -------------------------------------------------------

T0 = datetime(2026, 12, 7, 13, 29, 16, 832265, tzinfo=UTC)


class Clock:
    """A settable clock for ``Conversations(now=...)``."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def conversations(store: Any, clock: Clock, ttl_s: float) -> Conversations:  # noqa: F811  (the fixture imported above)
    """A server's ``Conversations`` under ``--conversation-ttl ttl_s``."""
    settings = SimpleNamespace(conversation_ttl_s=ttl_s, history_turns=3, ticket_turns=5)
    return Conversations(store, settings, now=clock)


def say(convs: Conversations, text: str, kind: str = "answer") -> Ticket | None:
    """Store ``text`` as the next turn of conversation c1, with a reply of ``kind``."""
    context = convs.context(bot="demo", owner="k1", conversation_id="c1")
    reply = SimpleNamespace(
        reply="r", kind=kind, intent=None, reason="why", candidates=[{"intent": "sports", "confidence": 0.4}]
    )
    return convs.record(
        bot="demo", owner="k1", conversation_id="c1", text=text, reply=reply, context=context, outbox=False
    )


def history(convs: Conversations) -> list[str]:
    return convs.context(bot="demo", owner="k1", conversation_id="c1").history


def test_a_lowered_ttl_applies_to_the_turns_stored_before_the_restart(store: Any) -> None:  # noqa: F811  (the fixture imported above)
    """The expiry was fixed when a turn was written: after a restart with --conversation-ttl 2, a
    turn stored under 1800 s was still read as context 3 s later, and purge deleted nothing."""
    clock = Clock(T0)
    say(conversations(store, clock, 1800), "football tickets")
    clock.at = T0 + timedelta(seconds=1)
    restarted = conversations(store, clock, 2)
    assert history(restarted) == ["football tickets"]  # within the new TTL: still context
    clock.at = T0 + timedelta(seconds=3)
    assert history(restarted) == []
    assert restarted.purge() == 1
    assert history(conversations(store, clock, 1800)) == []  # deleted, not only hidden


def test_a_raised_ttl_applies_to_the_turns_stored_before_the_restart(store: Any) -> None:  # noqa: F811  (the fixture imported above)
    """The running server's TTL governs every turn, both ways."""
    clock = Clock(T0)
    say(conversations(store, clock, 2), "football tickets")
    clock.at = T0 + timedelta(seconds=3)
    restarted = conversations(store, clock, 1800)
    assert restarted.purge() == 0
    assert history(restarted) == ["football tickets"]


# -- 3. one time format in a ticket --------------------------------------------------------------------

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?")


def times(value: Any) -> list[str]:
    """Every string of a JSON document that reads as a time."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in times(v)]
    if isinstance(value, list):
        return [t for v in value for t in times(v)]
    return [value] if isinstance(value, str) and TIME.match(value) else []


def shown(ticket: Ticket) -> dict[str, Any]:
    """The ticket as the API and the webhook send it."""
    return json.loads(json.dumps(TicketOut.model_validate(ticket.to_dict()).model_dump(mode="json")))


def test_every_time_in_a_ticket_is_written_with_z(store: Any) -> None:  # noqa: F811  (the fixture imported above)
    """The conversation's ``at`` read "+00:00" (``isoformat``) while created_at read "Z" (pydantic)."""
    clock = Clock(T0)
    convs = conversations(store, clock, 1800)
    say(convs, "football tickets")
    clock.at = T0 + timedelta(seconds=1)
    ticket = say(convs, "hmm?", kind="handoff")
    assert ticket is not None
    body = shown(store.get_ticket(ticket.ticket_id))
    found = times(body)
    assert len(found) == 4, found  # two turns, created_at, updated_at
    assert all(t.endswith("Z") for t in found), found
    assert body["conversation"][0]["at"] == "2026-12-07T13:29:16.832265Z"
    assert body["conversation"][1]["at"] == "2026-12-07T13:29:17.832265Z" == body["created_at"]


def test_a_ticket_stored_before_shows_its_conversation_times_with_z() -> None:
    """A ticket stored with "+00:00" times keeps them in the database; the JSON shows "Z"."""
    old = {"text": "hmm?", "reply": "", "kind": "handoff", "intent": None, "at": T0.isoformat()}
    odd = {"text": "x", "at": "not a time"}
    ticket = Ticket(
        ticket_id="tk_1",
        bot="demo",
        owner="k1",
        conversation_id="c1",
        text="hmm?",
        conversation=[odd, old],
        reason="why",
        candidates=[],
        status="open",
        created_at=T0,
        updated_at=T0,
    )
    assert [t["at"] for t in shown(ticket)["conversation"]] == ["not a time", "2026-12-07T13:29:16.832265Z"]
    turn = Turn("demo", "k1", "c1", "hi", "r", "answer", None, T0.replace(microsecond=0), T0)
    assert turn.to_dict()["at"] == "2026-12-07T13:29:16Z"  # as pydantic writes a whole second
