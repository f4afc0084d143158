"""Quotas shared by several ``tunelab serve`` processes on one key database.

Each ``AccessControl`` here stands for one process: its own store connection to the same SQLite
file, its own in-memory reservations. Near the limit ``admit`` re-reads the committed count, so a
second process cannot spend texts the first already recorded; far from it, no admit pays a read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tunelab.serve.access import AccessControl, AccessError, Caller
from tunelab.serve.limits import Quota
from tunelab.serve.store import Store, open_store
from tunelab.serve.store.base import UsageRecord


class FrozenClocks:
    """A monotonic clock and a UTC clock that stand still: the 30 s refresh never comes due."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two stores (two processes' connections) on one SQLite file."""
    a, b = open_store(None, tmp_path), open_store(None, tmp_path)
    yield a, b
    a.close()
    b.close()


def process(store: Store, clocks: FrozenClocks) -> AccessControl:
    return AccessControl(store, clock=lambda: clocks.mono, now=lambda: clocks.now)


def shared_key(a: AccessControl, b: AccessControl, quota: str) -> tuple[Caller, Caller]:
    """One key, authenticated in both processes."""
    _, token = a.create_key("acme", rate=None, quota=Quota.parse(quota))
    return a.authenticate(token), b.authenticate(token)


def request(access: AccessControl, caller: Caller, texts: int, rid: str) -> bool:
    """Admit and record one request like the app does; ``True`` if it was admitted."""
    try:
        access.admit(caller, texts, request_id=rid)
    except AccessError as exc:
        assert (exc.status, exc.code) == (429, "quota_exceeded")
        assert exc.retry_after is not None and exc.retry_after > 0
        status = 429
    else:
        status = 200
    access.record(
        caller=caller,
        model="m",
        version="1",
        texts=texts,
        tokens=texts,
        status=status,
        latency_ms=1.0,
        request_id=rid,
    )
    return status == 200


def test_two_processes_share_one_quota(stores: tuple[Store, Store]) -> None:
    """A 1, B 1, then A and B each up to 10 one-text requests: 10 texts in all, not 19."""
    clocks = FrozenClocks()
    a, b = process(stores[0], clocks), process(stores[1], clocks)
    ca, cb = shared_key(a, b, "10/day")
    assert request(a, ca, 1, "a0") and request(b, cb, 1, "b0")
    admitted = 2
    admitted += sum(request(a, ca, 1, f"a{i}") for i in range(1, 11))
    admitted += sum(request(b, cb, 1, f"b{i}") for i in range(1, 11))
    assert admitted == 10
    assert stores[0].texts_used(ca.key_id, datetime(2026, 11, 30, tzinfo=UTC)) == 10


def test_two_processes_interleaved(stores: tuple[Store, Store]) -> None:
    """Requests alternating between the processes stop at the limit too, and a request that
    would go over is refused even though it fits in each process's stale view."""
    clocks = FrozenClocks()
    a, b = process(stores[0], clocks), process(stores[1], clocks)
    ca, cb = shared_key(a, b, "10/day")
    admitted = 0
    for i in range(10):
        admitted += request(a, ca, 1, f"a{i}") + request(b, cb, 1, f"b{i}")
    assert admitted == 10
    with pytest.raises(AccessError) as err:
        a.admit(ca, 1)
    assert "10 of 10 texts used today" in err.value.message


def test_overshoot_is_bounded_by_the_other_process_in_flight(stores: tuple[Store, Store]) -> None:
    """What the README says: texts another process admitted but has not recorded yet are the
    only ones a process cannot see."""
    clocks = FrozenClocks()
    a, b = process(stores[0], clocks), process(stores[1], clocks)
    ca, cb = shared_key(a, b, "10/day")
    a.admit(ca, 6, request_id="in-flight")  # reserved in A's memory only
    assert request(b, cb, 10, "b-all")  # B cannot see A's 6: 16 in all at most
    a.record(
        caller=ca, model="m", version="1", texts=6, tokens=6, status=200, latency_ms=1.0,
        request_id="in-flight",
    )  # fmt: skip
    assert not request(b, cb, 1, "b-more") and not request(a, ca, 1, "a-more")


def count_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every read of a key's committed count (``Store.texts_used``) on ``store``."""
    reads: list[str] = []
    real = store.texts_used

    def counting(key_id: str, since: datetime, until: datetime | None = None) -> int:
        reads.append(key_id)
        return real(key_id, since, until)

    monkeypatch.setattr(store, "texts_used", counting)
    return reads


def test_far_from_the_limit_no_admit_reads_the_database(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path stays in memory: one read at the window's start, then none per request until
    a request would leave less than three quarters of the quota; from there, one read per admit;
    and none for a request this process's own count already refuses."""
    clocks = FrozenClocks()
    a, b = process(stores[0], clocks), process(stores[1], clocks)
    ca, _ = shared_key(a, b, "100/day")
    reads = count_reads(stores[0], monkeypatch)
    for i in range(25):  # 1..25 texts used: 75 or more left
        assert request(a, ca, 1, f"r{i}")
    assert len(reads) == 1
    for i in range(25, 35):  # 26..35: fewer than 75 left, each admit re-reads
        assert request(a, ca, 1, f"r{i}")
    assert len(reads) == 11
    assert request(a, ca, 65, "rest")
    assert len(reads) == 12
    for i in range(5):  # an exhausted key refused again and again costs no query
        assert not request(a, ca, 1, f"over{i}")
    assert len(reads) == 12


def test_a_large_quota_reads_only_in_its_last_texts(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The margin is capped (NEAR_TEXTS): a 1,000,000/month key reads per request only once
    fewer than 10,000 texts are left, not for three quarters of its month."""
    clocks = FrozenClocks()
    a, b = process(stores[0], clocks), process(stores[1], clocks)
    ca, _ = shared_key(a, b, "1000000/month")
    reads = count_reads(stores[0], monkeypatch)
    for i in range(10):  # 990,000 texts used: exactly 10,000 left
        assert request(a, ca, 99_000, f"big{i}")
    assert len(reads) == 1
    assert request(a, ca, 1, "last")
    assert len(reads) == 2


def test_a_read_during_a_write_neither_refuses_early_nor_counts_twice(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Near the limit an admit reads while another request's row is committed but not settled:
    it waits for that row to settle instead of counting it twice (row and reservation) and
    refusing a request that fits, and the count it leaves behind is exact."""
    clocks = FrozenClocks()
    a, b = process(stores[0], clocks), process(stores[1], clocks)
    a.settle_wait_s = 30.0  # a wait that ends by timeout would fail the timing below
    ca, _ = shared_key(a, b, "10/day")
    reads = count_reads(stores[0], monkeypatch)
    a.admit(ca, 5, request_id="x")
    outcome: list[str] = []

    def second() -> None:
        try:
            a.admit(ca, 5, request_id="y")
            outcome.append("admitted")
        except AccessError as exc:
            outcome.append(exc.code)

    thread = threading.Thread(target=second)

    def write(rec: UsageRecord) -> None:
        stores[0].record_usage(rec)  # committed; x's reservation is settled only after we return
        thread.start()
        deadline = time.monotonic() + 10
        while len(reads) < 2 and time.monotonic() < deadline:  # the second admit has read: 5 + 5x
            time.sleep(0.005)

    started = time.monotonic()
    a.record(
        caller=ca, model="m", version="1", texts=5, tokens=5, status=200, latency_ms=1.0,
        request_id="x", write=write,
    )  # fmt: skip
    thread.join(10)
    assert outcome == ["admitted"] and time.monotonic() - started < 10
    assert request(a, ca, 0, "empty")  # 0 texts: fits exactly 5 + 5 in flight
    a.record(
        caller=ca, model="m", version="1", texts=5, tokens=5, status=200, latency_ms=1.0,
        request_id="y",
    )  # fmt: skip
    with pytest.raises(AccessError) as err:
        a.admit(ca, 1)
    assert "10 of 10 texts used today" in err.value.message


def test_a_row_a_read_may_have_counted_is_read_again(stores: tuple[Store, Store]) -> None:
    """A read while a row is committed but not settled may hold it; settling then adds it again.
    The next admit reads the count instead of refusing on the doubled one."""
    clocks = FrozenClocks()
    a, b = process(stores[0], clocks), process(stores[1], clocks)
    ca, _ = shared_key(a, b, "10/day")
    a.admit(ca, 2, request_id="x")
    outcome: list[str] = []

    def write(rec: UsageRecord) -> None:
        stores[0].record_usage(rec)
        # Another request reads the count (2 committed + x's 2 reserved + 1): admitted, no wait.
        thread = threading.Thread(target=lambda: outcome.append(str(a.admit(ca, 1, request_id="y"))))
        thread.start()
        thread.join(10)

    a.record(
        caller=ca, model="m", version="1", texts=2, tokens=2, status=200, latency_ms=1.0,
        request_id="x", write=write,
    )  # fmt: skip
    assert outcome == ["y"]
    assert a.admit(ca, 7, request_id="z") == "z"  # 2 + 1 in flight + 7 = 10, not 2 + 2 + 1 + 7
