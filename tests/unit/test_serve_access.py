"""Rate limits, quotas and metering through ``AccessControl``, with fake clocks.

The quota-under-concurrency test runs over SQLite and PostgreSQL (``postgres_url`` fixture; it
skips with the reason where no server can be started).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tunelab.serve.access import AccessControl, AccessError, Caller, token_from_headers
from tunelab.serve.limits import Quota, Rate
from tunelab.serve.store import Store, open_store


class Clocks:
    """A monotonic clock (rate limits) and a UTC wall clock (quota windows) that tests move."""

    def __init__(self, now: datetime) -> None:
        self.mono = 1000.0
        self.now = now

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(None, tmp_path)
    yield s
    s.close()


@pytest.fixture
def clocks() -> Clocks:
    return Clocks(datetime(2026, 11, 30, 23, 59, 0, tzinfo=UTC))


def make_access(store: Store, clocks: Clocks, **kw) -> AccessControl:
    return AccessControl(store, clock=lambda: clocks.mono, now=lambda: clocks.now, **kw)


def new_caller(access: AccessControl, rate: str | None = None, quota: str | None = None) -> Caller:
    _, token = access.create_key(
        "acme", rate=Rate.parse(rate) if rate else None, quota=Quota.parse(quota) if quota else None
    )
    return access.authenticate(token)


def ok(access: AccessControl, caller: Caller, texts: int, rid: str, status: int = 200) -> None:
    access.record(
        caller=caller,
        model="m",
        version="1",
        texts=texts,
        tokens=10 * texts,
        status=status,
        latency_ms=5.0,
        request_id=rid,
    )


def refusal(fn: Callable[..., object], *args: object, **kw: object) -> AccessError:
    with pytest.raises(AccessError) as err:
        fn(*args, **kw)
    return err.value


def test_token_from_headers() -> None:
    assert token_from_headers("Bearer tl_x_y") == "tl_x_y"
    assert token_from_headers("bearer  tl_x_y ") == "tl_x_y"
    assert token_from_headers(None, "tl_a_b") == "tl_a_b"
    assert token_from_headers("Basic abc", "tl_a_b") == "tl_a_b"
    assert token_from_headers("Bearer ", None) is None
    assert token_from_headers(None, None) is None


def test_rate_limit_with_a_fake_clock(store: Store, clocks: Clocks) -> None:
    access = make_access(store, clocks)
    caller = new_caller(access, rate="2/s")
    access.admit(caller, 1)
    access.admit(caller, 1)  # a burst of one second's worth
    err = refusal(access.admit, caller, 1)
    assert (err.status, err.code) == (429, "rate_limited")
    assert err.retry_after == pytest.approx(0.5)
    assert err.headers() == {"Retry-After": "1"}
    assert err.to_body()["error"]["retry_after"] == 0.5
    assert "2/s" in err.message and "acme" in err.message
    clocks.advance(0.5)
    access.admit(caller, 1)


def test_no_limits_means_no_refusals(store: Store, clocks: Clocks) -> None:
    access = make_access(store, clocks)
    caller = new_caller(access)
    for i in range(200):
        assert access.admit(caller, 100) is None
        ok(access, caller, 100, f"r{i}")
    assert len(store.usage()) == 200


def test_quota_counts_successful_texts_and_resets_with_the_window(store: Store, clocks: Clocks) -> None:
    access = make_access(store, clocks)
    caller = new_caller(access, quota="10/month")
    access.admit(caller, 6, request_id="a")
    ok(access, caller, 6, "a")
    access.admit(caller, 3, request_id="b")
    ok(access, caller, 3, "b", status=500)  # a failed request does not count
    access.admit(caller, 4, request_id="c")
    ok(access, caller, 4, "c")
    err = refusal(access.admit, caller, 1)
    assert (err.status, err.code) == (429, "quota_exceeded")
    assert "10 of 10 texts used this month" in err.message
    assert "resets at 2026-12-01T00:00:00Z" in err.message
    assert err.retry_after == pytest.approx(60.0)
    ok(access, caller, 1, "refused", status=429)  # the app records the refusal too
    clocks.advance(61)  # December: a new window
    access.admit(caller, 10)


def test_quota_survives_a_restart(store: Store, clocks: Clocks) -> None:
    access = make_access(store, clocks)
    caller = new_caller(access, quota="10/day")
    access.admit(caller, 8)
    ok(access, caller, 8, "r1")
    restarted = make_access(store, clocks)  # a new process over the same database
    assert refusal(restarted.admit, caller, 3).code == "quota_exceeded"
    restarted.admit(caller, 2)


def test_a_row_settles_only_its_own_reservation(store: Store, clocks: Clocks) -> None:
    """Rows of requests that reserved nothing (404, 413, 422, 429, another id) of the same size as
    an in-flight reservation release nothing; each request settles the reservation of its own id."""
    access = make_access(store, clocks)
    caller = new_caller(access, quota="10/hour")
    assert access.admit(caller, 5, request_id="x") == "x"
    generated = access.admit(caller, 5)  # no request id given: settle with the one returned
    assert generated and generated != "x"
    assert refusal(access.admit, caller, 1).code == "quota_exceeded"
    for rid, status in [("refused", 429), ("unknown-model", 404), ("too-many", 413), ("too-long", 422)]:
        ok(access, caller, 5, rid, status=status)  # same size as both reservations
    ok(access, caller, 5, "other-id", status=500)
    ok(access, caller, 5, "other-ok")  # a 200 under an id that reserved nothing: counted, frees nothing
    assert refusal(access.admit, caller, 1).code == "quota_exceeded"  # 5 + 5 in flight, 5 counted
    ok(access, caller, 5, "x", status=503)  # releases x only
    assert refusal(access.admit, caller, 1).code == "quota_exceeded"  # 5 counted + 5 in flight
    ok(access, caller, 5, generated)  # counted: 10 of 10
    assert refusal(access.admit, caller, 1).code == "quota_exceeded"
    clocks.advance(3600)  # next hour: nothing in flight, nothing counted
    access.admit(caller, 10)


def test_lost_reservations_expire(store: Store, clocks: Clocks) -> None:
    access = make_access(store, clocks, reservation_ttl_s=60)
    caller = new_caller(access, quota="10/day")
    access.admit(caller, 10)  # never recorded (say the client vanished and nothing wrote a row)
    assert refusal(access.admit, caller, 1).code == "quota_exceeded"
    clocks.mono += 61
    access.admit(caller, 10)


def test_usage_summary(store: Store, clocks: Clocks) -> None:
    access = make_access(store, clocks)
    caller = new_caller(access, rate="20/s", quota="100/day")
    other = access.authenticate(access.create_key("other", rate=None, quota=None)[1])
    for i, status in enumerate([200, 200, 429, 500]):
        ok(access, caller, 3, f"r{i}", status=status)
    ok(access, other, 50, "o1")
    summary = access.usage_summary(caller, None, None)
    assert summary["key"] == {"id": caller.key_id, "name": "acme"}
    assert (summary["requests"], summary["texts"], summary["tokens"]) == (4, 6, 60)
    assert summary["by_status"] == {"200": 2, "429": 1, "500": 1}
    assert summary["by_model"] == {"m": {"requests": 4, "texts": 6, "tokens": 60}}
    assert summary["rate"] == "20/s"
    assert summary["quota"] == {
        "limit": 100,
        "period": "day",
        "used": 6,
        "remaining": 94,
        "resets_at": "2026-12-01T00:00:00+00:00",
    }
    later = access.usage_summary(caller, clocks.now + timedelta(seconds=1), None)
    assert later["requests"] == 0 and later["since"].startswith("2026-11-30T23:59:01")


def test_revoking_drops_cached_limits(store: Store, clocks: Clocks) -> None:
    access = make_access(store, clocks)
    caller = new_caller(access, rate="1/s")
    access.admit(caller, 1)
    access.revoke_key(caller.key_id)
    assert [k.active for k in access.list_keys()] == [False]


def drop_tables(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS tunelab_keys, tunelab_usage")


def race(
    access: AccessControl, caller: Caller, rid: str, barrier: threading.Barrier, admitted: list[str]
) -> None:
    """One client: wait for the others, ask for 7 texts, record the outcome like the app does."""
    barrier.wait()
    try:
        access.admit(caller, 7, request_id=rid)
    except AccessError as exc:
        assert exc.code == "quota_exceeded"
        ok(access, caller, 7, rid, status=429)
        return
    admitted.append(rid)
    ok(access, caller, 7, rid)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_quota_is_exact_under_32_concurrent_requests(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """32 threads race to admit 7-text requests against a 100-text quota: 14 get in, never 15."""
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
        drop_tables(url)
        store = open_store(url, tmp_path)
    else:
        store = open_store(None, tmp_path)
    try:
        # a fixed clock at noon: on the real one a run across 00:00 UTC opened a new day's window
        # between two rounds (14 admitted again) or before the count below (0 used, not 98)
        clocks = Clocks(datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC))
        access = make_access(store, clocks)
        caller = new_caller(access, quota="100/day")
        for rnd in range(3):  # each round: a race, then every admitted request recorded
            admitted: list[str] = []
            barrier = threading.Barrier(32)
            threads = [
                threading.Thread(target=race, args=(access, caller, f"{rnd}-{t}", barrier, admitted))
                for t in range(32)
            ]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert len(admitted) == (14 if rnd == 0 else 0)
        day = clocks.now.replace(hour=0)
        assert store.texts_used(caller.key_id, day) == 98
        assert len(store.usage()) == 3 * 32
    finally:
        store.close()
