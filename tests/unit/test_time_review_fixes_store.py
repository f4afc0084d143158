"""Review of times and clocks (and of scale): the service's store.

- A support conversation's turns were read back by their wall-clock stamp: after the clock
  stepped back, the newest message fell out of the bot's history (the previous message a
  follow-up is joined to, and the ticket's order).
- `tunelab usage --key NAME` filtered on the key's name with no index: every customer's rows were
  walked (1.5 s at a million rows, against 0.05 s by id).
- `GET /v1/usage` refused a window one second over 366 days saying it "spans 366 days".
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_serve_security import App, open_app

from tunelab.serve.store import Store, open_store
from tunelab.serve.store.sql import GROUPS, _where
from tunelab.serve.store.support import Turn


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(None, tmp_path)
    yield s
    s.close()


def _turn(text: str, at: datetime) -> Turn:
    return Turn(
        bot="bank",
        owner="acme",
        conversation_id="c1",
        text=text,
        reply="ok",
        kind="answer",
        intent=None,
        at=at,
        expires_at=at + timedelta(hours=1),
    )


def test_a_clock_stepped_back_keeps_the_newest_message_in_the_history(store: Store) -> None:
    noon = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    for text, at in (
        ("first", noon),
        ("second", noon + timedelta(seconds=1)),
        ("third", noon - timedelta(seconds=1)),  # the clock stepped back 2 s
    ):
        store.add_turn(_turn(text, at))
    turns = store.recent_turns(bot="bank", owner="acme", conversation_id="c1", now=noon, limit=2)
    assert [t.text for t in turns] == ["second", "third"]
    every = store.recent_turns(bot="bank", owner="acme", conversation_id="c1", now=noon, limit=5)
    assert [t.text for t in every] == ["first", "second", "third"]


def test_usage_by_key_name_reads_an_index(store: Store) -> None:
    where, params = _where(None, "acme", None, None)
    with store._transaction(write=False) as conn:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {GROUPS.format(where=where)}", params).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "USING INDEX tunelab_usage_name_at (key_name=?)" in details


@pytest.fixture
def api(tmp_path: Path) -> Iterator[App]:
    yield from open_app(tmp_path)


def test_a_usage_window_one_second_too_long_says_by_how_much(api: App) -> None:
    wide = api.client.get(
        "/v1/usage",
        params={"since": "2025-01-01T00:00:00Z", "until": "2026-01-02T00:00:01Z"},
        headers=api.headers(api.token),
    )
    assert wide.status_code == 422
    message = wide.json()["error"]["message"]
    assert "spans 366 days, 0:00:01, more than 366 days; ask for at most 366 at a time" in message
