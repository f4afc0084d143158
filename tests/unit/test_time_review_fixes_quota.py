"""Review of times and clocks: a quota window counts only its own rows.

The count read from the database had no end, so rows stamped in the next window (by a server
whose clock runs ahead, or before this one's clock stepped back) were counted in this one: a
request was refused with a false count ("17 of 10 texts used this month" where November had 8).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_serve_access import Clocks, make_access, new_caller, ok

from tunelab.serve.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(None, tmp_path)
    yield s
    s.close()


def test_a_server_behind_another_counts_only_its_own_months_texts(store: Store) -> None:
    behind = Clocks(datetime(2026, 11, 30, 23, 59, 50, tzinfo=UTC))
    ahead = Clocks(datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC))  # another serve process on the database
    # quota_refresh_s=0: each admission reads the count again, as one near a period's end would
    late, early = make_access(store, behind, quota_refresh_s=0), make_access(store, ahead)
    caller = new_caller(late, quota="10/month")
    late.admit(caller, 8, request_id="nov")
    ok(late, caller, 8, "nov")
    early.admit(caller, 9, request_id="dec")
    ok(early, caller, 9, "dec")
    behind.advance(8)  # still November here: 8 of 10 used, and 1 more is admitted
    late.admit(caller, 1, request_id="nov2")
    assert late.usage_summary(caller, None, None)["quota"]["used"] == 8


def test_a_clock_stepped_back_counts_the_window_it_is_in(store: Store) -> None:
    clocks = Clocks(datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC))
    access = make_access(store, clocks)
    caller = new_caller(access, quota="10/month")
    access.admit(caller, 9, request_id="dec")
    ok(access, caller, 9, "dec")
    clocks.now -= timedelta(seconds=2)  # NTP steps the clock back across midnight
    access.admit(caller, 1, request_id="nov")  # November's window holds no text
    assert access.usage_summary(caller, None, None)["quota"]["used"] == 0
