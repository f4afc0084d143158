"""The support bot's tables (turns, tickets, webhook outbox, feedback) and the usage table's ``app``
column, over SQLite and a real PostgreSQL server (``postgres_url`` in tests/conftest.py)."""

from __future__ import annotations

import csv
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tunelab.serve.store import UsageRecord, open_store
from tunelab.serve.store.support import Ticket, TicketNotFoundError, TicketStateError, Turn

T0 = datetime(2026, 11, 15, 12, 0, 0, 123456, tzinfo=UTC)
TABLES = (
    "tunelab_keys, tunelab_usage, tunelab_support_turns, tunelab_support_tickets, "
    "tunelab_support_outbox, tunelab_support_feedback"
)


def clear_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLES}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        s = open_store(None, tmp_path)
    else:
        url = request.getfixturevalue("postgres_url")
        clear_postgres(url)
        s = open_store(url, tmp_path)
    yield s
    s.close()


def turn(text: str, at: datetime, *, conv: str = "c1", owner: str = "k1", ttl_s: float = 600, **kw) -> Turn:
    fields = {
        "bot": "bank",
        "owner": owner,
        "conversation_id": conv,
        "text": text,
        "reply": f"reply to {text}",
        "kind": "answer",
        "intent": "card_arrival",
        "at": at,
        "expires_at": at + timedelta(seconds=ttl_s),
    }
    return Turn(**{**fields, **kw})


def ticket(tid: str, at: datetime = T0, *, owner: str = "k1", conversation=None, history=None) -> Ticket:
    conversation = conversation or [{"text": "hello?", "reply": "", "kind": "handoff", "intent": None}]
    return Ticket(
        ticket_id=tid,
        bot="bank",
        owner=owner,
        conversation_id="c1",
        text=conversation[-1]["text"],
        conversation=conversation,
        reason="intent x at 0.20 below 0.70",
        candidates=[{"intent": "card_arrival", "confidence": 0.2}],
        status="open",
        created_at=at,
        updated_at=at,
        history=history,
    )


def handoff(store, tid: str, at: datetime = T0, *, outbox: bool = False, **kw) -> None:
    t = ticket(tid, at, **kw)
    store.add_turn(turn(t.text, at, owner=t.owner, kind="handoff", intent=None), ticket=t, outbox=outbox)


# -- conversations ---------------------------------------------------------------------------------


def test_recent_turns_are_per_conversation_and_owner_oldest_first_and_unexpired(store) -> None:
    store.add_turn(turn("first", T0, ttl_s=30))  # expired by T0+60
    for i in range(1, 5):
        store.add_turn(turn(f"t{i}", T0 + timedelta(seconds=i)))
    store.add_turn(turn("other conversation", T0 + timedelta(seconds=2), conv="c2"))
    store.add_turn(turn("other key, same id", T0 + timedelta(seconds=3), owner="k2"))
    now = T0 + timedelta(seconds=60)
    recent = store.recent_turns(bot="bank", owner="k1", conversation_id="c1", now=now, limit=3)
    assert [t.text for t in recent] == ["t2", "t3", "t4"]
    everything = store.recent_turns(bot="bank", owner="k1", conversation_id="c1", now=now, limit=50)
    assert [t.text for t in everything] == ["t1", "t2", "t3", "t4"]  # "first" expired: never context
    assert store.recent_turns(bot="other", owner="k1", conversation_id="c1", now=now, limit=5) == []
    assert everything[0].at == T0 + timedelta(seconds=1)  # microseconds and UTC survive


def test_purge_deletes_only_expired_turns(store) -> None:
    store.add_turn(turn("old", T0, ttl_s=10))
    store.add_turn(turn("new", T0, ttl_s=1000))
    assert store.purge_turns(T0 + timedelta(seconds=10)) == 1
    assert store.purge_turns(T0 + timedelta(seconds=10)) == 0
    left = store.recent_turns(bot="bank", owner="k1", conversation_id="c1", now=T0, limit=10)
    assert [t.text for t in left] == ["new"]


# -- tickets ---------------------------------------------------------------------------------------


def test_a_handoff_stores_its_ticket_with_the_turn(store) -> None:
    conv = [{"text": "card?", "reply": "r", "kind": "answer", "intent": "a"}, {"text": "hmm ¿qué?"}]
    handoff(store, "tk_1", conversation=conv)
    got = store.get_ticket("tk_1")
    assert got.status == "open" and got.conversation == conv and got.text == "hmm ¿qué?"
    assert got.candidates == [{"intent": "card_arrival", "confidence": 0.2}]
    assert got.created_at == T0
    assert store.get_ticket("tk_1", owner="k1") == got
    with pytest.raises(TicketNotFoundError, match="tk_1"):
        store.get_ticket("tk_1", owner="k2")  # another key's ticket is not found, not forbidden
    with pytest.raises(TicketNotFoundError):
        store.get_ticket("tk_nope")


def test_list_tickets_filters_by_owner_status_and_bot(store) -> None:
    handoff(store, "tk_a", T0)
    handoff(store, "tk_b", T0 + timedelta(seconds=1), owner="k2")
    handoff(store, "tk_c", T0 + timedelta(seconds=2))
    store.claim_ticket("tk_c", agent="ann", now=T0)
    assert [t.ticket_id for t in store.list_tickets()] == ["tk_a", "tk_b", "tk_c"]
    assert [t.ticket_id for t in store.list_tickets(owner="k1")] == ["tk_a", "tk_c"]
    assert [t.ticket_id for t in store.list_tickets(owner="k1", status="open")] == ["tk_a"]
    assert [t.ticket_id for t in store.list_tickets(status="claimed")] == ["tk_c"]
    assert store.list_tickets(bot="other") == []
    assert len(store.list_tickets(limit=2)) == 2


def test_claim_and_resolve_rules(store) -> None:
    handoff(store, "tk_1")
    claimed = store.claim_ticket("tk_1", agent="ann", now=T0 + timedelta(minutes=1))
    assert (claimed.status, claimed.claimed_by) == ("claimed", "ann")
    assert store.claim_ticket("tk_1", agent="ann", now=T0).claimed_at == claimed.claimed_at  # no-op
    with pytest.raises(TicketStateError, match="agent 'ann' claimed it"):
        store.claim_ticket("tk_1", agent="bob", now=T0)
    with pytest.raises(TicketStateError, match="'ann'"):
        store.resolve_ticket("tk_1", agent="bob", now=T0, intent="card_arrival", answer=None)
    with pytest.raises(TicketNotFoundError):
        store.claim_ticket("tk_1", agent="ann", now=T0, owner="k2")
    done = store.resolve_ticket(
        "tk_1", agent="ann", now=T0 + timedelta(minutes=2), intent="lost", answer=None
    )
    assert (done.status, done.resolved_by, done.resolution_intent) == ("resolved", "ann", "lost")
    for call in (store.claim_ticket, store.resolve_ticket):
        kw = {"intent": "x", "answer": None} if call == store.resolve_ticket else {}
        with pytest.raises(TicketStateError, match="already resolved"):
            call("tk_1", agent="ann", now=T0, **kw)
    assert len(store.feedback()) == 1  # the failed second resolution stored nothing


def test_an_open_ticket_can_be_resolved_directly_and_feedback_keeps_the_context(store) -> None:
    conv = [{"text": "I ordered a card"}, {"text": "and how long does that take?"}]
    handoff(store, "tk_1", conversation=conv)
    handoff(store, "tk_2", owner="k2")
    store.resolve_ticket("tk_1", agent="ann", now=T0, intent="card_arrival", answer="5 days", owner="k1")
    store.resolve_ticket("tk_2", agent="bob", now=T0 + timedelta(seconds=1), intent=None, answer="Call us")
    rows = store.feedback()
    assert [(f.text, f.context, f.intent, f.answer) for f in rows] == [
        ("and how long does that take?", ["I ordered a card"], "card_arrival", "5 days"),
        ("hello?", [], None, "Call us"),
    ]
    assert store.feedback(bot="other") == []
    assert [f.ticket_id for f in store.feedback(since=T0 + timedelta(seconds=1))] == ["tk_2"]


def test_feedback_is_read_with_the_history_the_bot_was_given_not_the_tickets_copy(store) -> None:
    # The example's context came from the ticket's copy of the conversation (ticket_turns), not
    # from what the bot was given (history_turns): it could hold a message the bot never saw, or
    # lack one it did.
    conv = [{"text": "hi"}, {"text": "I ordered a card"}, {"text": "how long?"}]
    handoff(store, "tk_none", conversation=conv, history=[])  # history_turns=0: read alone
    handoff(store, "tk_more", conversation=conv[-1:], history=["I ordered a card"])  # ticket_turns=1
    handoff(store, "tk_old", conversation=conv)  # stored before history was kept: the copy
    assert store.get_ticket("tk_none").history == []
    assert store.get_ticket("tk_more").history == ["I ordered a card"]
    assert store.get_ticket("tk_old").history is None
    for i, tid in enumerate(("tk_none", "tk_more", "tk_old")):
        store.resolve_ticket(
            tid, agent="ann", now=T0 + timedelta(seconds=i), intent="card_arrival", answer=None
        )
    assert [(f.ticket_id, f.context) for f in store.feedback()] == [
        ("tk_none", []),
        ("tk_more", ["I ordered a card"]),
        ("tk_old", ["hi", "I ordered a card"]),
    ]


def test_concurrent_claims_have_one_winner(store) -> None:
    handoff(store, "tk_1")
    agents = [f"agent{i}" for i in range(8)]
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(len(agents))

    def claim(agent: str) -> None:
        barrier.wait()
        try:
            store.claim_ticket("tk_1", agent=agent, now=T0)
            outcomes[agent] = "won"
        except TicketStateError:
            outcomes[agent] = "lost"

    threads = [threading.Thread(target=claim, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes.values()) == ["lost"] * 7 + ["won"]
    winner = next(a for a, o in outcomes.items() if o == "won")
    assert store.get_ticket("tk_1").claimed_by == winner


# -- webhook outbox --------------------------------------------------------------------------------


def test_outbox_lease_retry_and_delivery(store) -> None:
    handoff(store, "tk_1", outbox=True)
    handoff(store, "tk_2", T0 + timedelta(seconds=1))  # no outbox row: no webhook when it was made
    first = store.lease_deliveries(now=T0 + timedelta(seconds=5), lease_s=30)
    assert [(d.ticket.ticket_id, d.attempts) for d in first] == [("tk_1", 1)]
    assert store.lease_deliveries(now=T0 + timedelta(seconds=6), lease_s=30) == []  # leased
    retry_at = T0 + timedelta(seconds=10)
    store.mark_failed("tk_1", error="HTTP 500", retry_at=retry_at, now=T0 + timedelta(seconds=6))
    assert store.lease_deliveries(now=retry_at - timedelta(seconds=1), lease_s=30) == []
    second = store.lease_deliveries(now=retry_at, lease_s=30)
    assert [d.attempts for d in second] == [2]
    store.mark_delivered("tk_1", now=retry_at)
    assert store.lease_deliveries(now=retry_at + timedelta(hours=1), lease_s=30) == []
    (row,) = store.outbox()
    assert row["delivered_at"] == retry_at and row["attempts"] == 2 and row["last_error"] is None


def test_a_lease_that_ends_unfinished_falls_due_again(store) -> None:
    """A worker that died mid-delivery: the row is taken again after the lease."""
    handoff(store, "tk_1", outbox=True)
    store.lease_deliveries(now=T0, lease_s=30)
    again = store.lease_deliveries(now=T0 + timedelta(seconds=31), lease_s=30)
    assert [d.attempts for d in again] == [2]


def test_a_failure_after_the_lease_ran_out_leaves_the_new_holders_lease_alone(store) -> None:
    """Review finding 8: worker A's late failure must not move worker B's lease (nor give up)."""
    handoff(store, "tk_1", outbox=True)
    [a] = store.lease_deliveries(now=T0, lease_s=30)
    [b] = store.lease_deliveries(now=T0 + timedelta(seconds=31), lease_s=30)  # A's lease ran out
    late = T0 + timedelta(seconds=40)
    assert not store.mark_failed("tk_1", error="HTTP 500", retry_at=late, now=late, lease=a.lease)
    assert not store.mark_failed("tk_1", error="HTTP 500", retry_at=None, now=late, lease=a.lease)
    (row,) = store.outbox()
    assert (row["next_attempt_at"], row["gave_up_at"], row["last_error"]) == (b.lease, None, None)
    assert store.lease_deliveries(now=late, lease_s=30) == []  # still B's
    assert store.mark_failed("tk_1", error="HTTP 500", retry_at=late, now=late, lease=b.lease)
    assert store.outbox()[0]["next_attempt_at"] == late


def test_giving_up_stops_the_retries(store) -> None:
    handoff(store, "tk_1", outbox=True)
    store.lease_deliveries(now=T0, lease_s=30)
    store.mark_failed("tk_1", error="x" * 2000, retry_at=None, now=T0)
    assert store.lease_deliveries(now=T0 + timedelta(days=1), lease_s=30) == []
    (row,) = store.outbox()
    assert row["gave_up_at"] == T0 and len(row["last_error"]) == 500


def test_concurrent_workers_never_lease_one_row_twice(store) -> None:
    for i in range(20):
        handoff(store, f"tk_{i:02d}", outbox=True)
    taken: list[str] = []
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        for _ in range(10):
            taken.extend(d.ticket.ticket_id for d in store.lease_deliveries(now=T0, lease_s=60, limit=3))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == [f"tk_{i:02d}" for i in range(20)]


# -- usage: the app column -------------------------------------------------------------------------


def test_usage_rows_name_the_app_and_groups_keep_it_apart(store) -> None:
    base = {
        "at": T0,
        "key_id": "k1",
        "key_name": "acme",
        "version": None,
        "texts": 1,
        "tokens": 0,
        "status": 200,
        "latency_ms": 3.0,
    }
    store.record_usage(UsageRecord(**base, model="bank", request_id="r1", app="support"))
    store.record_usage(UsageRecord(**base, model="bank", request_id="r2"))  # a model named like the bot
    assert [r.app for r in store.usage()] == ["support", None]
    groups = store.usage_groups()
    assert sorted((g.product, g.requests) for g in groups) == [("bank", 1), ("support/bank", 1)]


OLD_USAGE = """CREATE TABLE tunelab_usage (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, key_id TEXT, key_name TEXT, model TEXT, version TEXT,
    texts INTEGER NOT NULL, tokens INTEGER NOT NULL, status INTEGER NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL, request_id TEXT NOT NULL)"""


def test_an_older_sqlite_database_gets_the_app_column_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(OLD_USAGE)
        conn.execute(
            "INSERT INTO tunelab_usage (at, key_id, key_name, model, version, texts, tokens, status,"
            " latency_ms, request_id) VALUES (?, 'k1', 'acme', 'm', '1', 2, 9, 200, 1.5, 'old')",
            [T0.isoformat(timespec="microseconds")],
        )
    for _ in range(2):  # the second open finds the column there
        with open_store(str(db), tmp_path) as s:
            rows = s.usage()
    assert [(r.request_id, r.app, r.texts) for r in rows] == [("old", None, 2)]
    with open_store(str(db), tmp_path) as s:
        s.record_usage(UsageRecord(**{**rows[0].__dict__, "request_id": "new", "app": "support"}))
        assert [r.app for r in s.usage()] == [None, "support"]


def test_an_older_postgres_database_gets_the_app_column(postgres_url: str, tmp_path: Path) -> None:
    import psycopg

    clear_postgres(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        old = OLD_USAGE.replace("id INTEGER PRIMARY KEY", "id BIGSERIAL PRIMARY KEY")
        conn.execute(old.replace("at TEXT", "at TIMESTAMPTZ"))
    for _ in range(2):
        with open_store(postgres_url, tmp_path) as s:
            s.record_usage(
                UsageRecord(T0, "k1", "acme", "bank", None, 1, 0, 200, 1.0, f"r{_}", app="support")
            )
            assert {r.app for r in s.usage()} == {"support"}


def test_the_usage_cli_names_an_apps_requests_app_slash_bot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv
    import io

    from tunelab.cli.main import main

    with open_store(None, tmp_path) as s:
        for i, app in enumerate(("support", None)):
            s.record_usage(UsageRecord(T0, "k1", "acme", "bank", None, 1, 0, 200, 2.0, f"r{i}", app=app))
    assert main(["usage", "--data-dir", str(tmp_path), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["model"] for r in rows] == ["support/bank", "bank"]
    assert main(["usage", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "support/bank" in out and " bank " in out


# A tickets table as the releases before the ``history`` column made it ({ts}: the backend's type).
OLD_TICKETS = """CREATE TABLE tunelab_support_tickets (
    ticket_id TEXT PRIMARY KEY, bot TEXT NOT NULL, owner TEXT NOT NULL, conversation_id TEXT NOT NULL,
    text TEXT NOT NULL, conversation TEXT NOT NULL, reason TEXT NOT NULL, candidates TEXT NOT NULL,
    status TEXT NOT NULL, created_at {ts} NOT NULL, updated_at {ts} NOT NULL, claimed_by TEXT,
    claimed_at {ts}, resolved_by TEXT, resolved_at {ts}, resolution_intent TEXT, resolution_answer TEXT)"""
OLD_TICKET_ROW = (
    "INSERT INTO tunelab_support_tickets (ticket_id, bot, owner, conversation_id, text, conversation, reason,"
    " candidates, status, created_at, updated_at) VALUES ('tk_old', 'bank', 'k1', 'c1', 'how long?',"
    """ '[{{"text": "I ordered a card"}}, {{"text": "how long?"}}]', 'r', '[]', 'open', {at}, {at})"""
)


def _export_old_and_new_tickets(url: str, tmp_path: Path) -> list[dict]:
    """Open the older database twice (the second open finds the column), resolve its ticket and a
    new one, and export them."""
    from tunelab.cli import support_feedback_cmd as feedback_cmd

    for _ in range(2):
        with open_store(url, tmp_path) as s:
            assert s.get_ticket("tk_old").history is None
    with open_store(url, tmp_path) as s:
        s.resolve_ticket("tk_old", agent="ann", now=T0, intent="card_arrival", answer=None)
        conv = [{"text": "I ordered a card"}, {"text": "it never came"}]
        handoff(s, "tk_new", T0 + timedelta(seconds=1), conversation=conv, history=[])
        s.resolve_ticket(
            "tk_new", agent="ann", now=T0 + timedelta(seconds=1), intent="lost_card", answer=None
        )
        out = tmp_path / "feedback.csv"
        feedback_cmd.export_feedback(s, out)
    return list(csv.DictReader(out.open(newline="", encoding="utf-8")))


EXPORTED_OLD_AND_NEW = [
    {"text": "I ordered a card how long?", "label": "card_arrival"},  # the old ticket: its copy
    {"text": "it never came", "label": "lost_card"},  # the new one: its history (none)
]


def test_an_older_sqlite_tickets_table_gets_the_history_column_and_old_tickets_still_export(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(OLD_TICKETS.format(ts="TEXT"))
        conn.execute(OLD_TICKET_ROW.format(at=repr(T0.isoformat(timespec="microseconds"))))
    assert _export_old_and_new_tickets(str(db), tmp_path) == EXPORTED_OLD_AND_NEW


def test_an_older_postgres_tickets_table_gets_the_history_column(postgres_url: str, tmp_path: Path) -> None:
    import psycopg

    clear_postgres(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(OLD_TICKETS.format(ts="TIMESTAMPTZ"))
        conn.execute(OLD_TICKET_ROW.format(at=repr(T0.isoformat())))
    assert _export_old_and_new_tickets(postgres_url, tmp_path) == EXPORTED_OLD_AND_NEW
