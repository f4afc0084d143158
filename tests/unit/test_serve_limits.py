"""Rates, quotas and the token bucket: parsing, windows, and exact counting under threads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tunelab.errors import ConfigError
from tunelab.serve.limits import Quota, Rate, TokenBucket


@pytest.mark.parametrize(
    ("text", "per_second", "burst"),
    [
        ("20/s", 20.0, 20),
        ("100/min", 100 / 60, 2),
        ("5000/hour", 5000 / 3600, 2),
        ("0.5/sec", 0.5, 1),
        ("20/s:50", 20.0, 50),
        (" 3 / minute ", 0.05, 1),
    ],
)
def test_rate_parse(text: str, per_second: float, burst: int) -> None:
    rate = Rate.parse(text)
    assert rate.per_second == pytest.approx(per_second)
    assert rate.burst == burst


@pytest.mark.parametrize("text", ["20/s", "100/min", "5000/hour", "20/s:50", "1/hour", "7/min"])
def test_rate_str_round_trips(text: str) -> None:
    rate = Rate.parse(text)
    assert str(rate) == text
    assert Rate.parse(str(rate)) == rate


@pytest.mark.parametrize("text", ["0.1/hour", "0.0001/hour", "2.5/min:3"])
def test_a_slow_rate_is_written_in_a_form_that_reads_back(text: str) -> None:
    """0.1/hour was written "2.77778e-05/s", which parse() refused: every key list and revoke failed."""
    rate = Rate.parse(text)
    again = Rate.parse(str(rate))
    assert again.burst == rate.burst and again.per_second == pytest.approx(rate.per_second, rel=1e-12)
    assert "e" not in str(rate)


def test_a_rate_is_written_without_float_noise() -> None:
    """0.0001/s was shown by keys create and keys list as 0.36000000000000004/hour."""
    rate = Rate.parse("0.0001/s")
    assert str(rate) == "0.36/hour"
    assert Rate.parse(str(rate)).per_second == pytest.approx(rate.per_second, rel=1e-12)


def test_a_rate_stored_in_the_old_exponent_form_still_reads() -> None:
    assert Rate.from_stored("2.77778e-05/s").per_second == pytest.approx(0.1 / 3600, rel=1e-5)
    assert Rate.from_stored("20/s:50") == Rate.parse("20/s:50")
    with pytest.raises(ConfigError, match="rate"):
        Rate.from_stored("1e3/s")


@pytest.mark.parametrize("text", ["", "20", "20/fortnight", "-1/s", "0/s", "fast", "20/s:0", "1e3/s"])
def test_rate_parse_rejects_bad_text(text: str) -> None:
    with pytest.raises(ConfigError, match="rate"):
        Rate.parse(text)


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("100000/month", 100000, "month"),
        ("5000/day", 5000, "day"),
        ("100/hour", 100, "hour"),
        ("1_000/days", 1000, "day"),
        ("1,000,000/month", 1_000_000, "month"),
    ],
)
def test_quota_parse(text: str, limit: int, period: str) -> None:
    quota = Quota.parse(text)
    assert (quota.limit, quota.period) == (limit, period)
    assert Quota.parse(str(quota)) == quota


@pytest.mark.parametrize(
    "text",
    ["100000", "0/month", "10/week", "lots/day", "/day", "1,,0/day", "1,5/day", "100,00/day", "1__0/day"],
)
def test_quota_parse_rejects_bad_text(text: str) -> None:
    with pytest.raises(ConfigError, match="quota"):
        Quota.parse(text)


def test_quota_windows_are_utc_calendar_periods() -> None:
    now = datetime(2026, 12, 31, 23, 59, 30, 123, tzinfo=UTC)
    assert Quota(10, "hour").window_start(now) == datetime(2026, 12, 31, 23, tzinfo=UTC)
    assert Quota(10, "day").window_start(now) == datetime(2026, 12, 31, tzinfo=UTC)
    assert Quota(10, "month").window_start(now) == datetime(2026, 12, 1, tzinfo=UTC)
    assert Quota(10, "month").window_end(now) == datetime(2027, 1, 1, tzinfo=UTC)
    assert Quota(10, "day").window_end(now) == datetime(2027, 1, 1, tzinfo=UTC)
    assert Quota(10, "hour").window_end(now) == datetime(2027, 1, 1, tzinfo=UTC)
    # Another zone's local time is converted first: 01:30 in UTC+2 is 23:30 UTC the day before.
    local = datetime(2026, 11, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert Quota(10, "month").window_start(local) == datetime(2026, 10, 1, tzinfo=UTC)
    assert Quota(10, "day").window_start(datetime(2026, 2, 28, 12)) == datetime(2026, 2, 28, tzinfo=UTC)


def test_token_bucket_with_a_fake_clock() -> None:
    bucket = TokenBucket(Rate.parse("2/s:3"))
    assert [bucket.try_take(now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert bucket.try_take(now=100.0) == pytest.approx(0.5)  # next token in 1 / (2/s)
    assert bucket.try_take(now=100.25) == pytest.approx(0.25)
    assert bucket.try_take(now=100.5) == 0.0
    assert bucket.try_take(now=100.5) > 0
    assert [bucket.try_take(now=200.0) for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # refilled, capped at burst
    assert bucket.try_take(now=150.0) > 0  # a clock going backwards never mints tokens


def test_token_bucket_uses_its_clock() -> None:
    t = [0.0]
    bucket = TokenBucket(Rate.parse("1/s"), clock=lambda: t[0])
    assert bucket.try_take() == 0.0
    assert bucket.try_take() == pytest.approx(1.0)
    t[0] = 1.0
    assert bucket.try_take() == 0.0


def test_token_bucket_is_exact_under_threads() -> None:
    bucket = TokenBucket(Rate.parse("1/hour:100"))
    allowed = []
    barrier = threading.Barrier(32)

    def worker() -> None:
        barrier.wait()
        allowed.extend(1 for _ in range(10) if bucket.try_take(now=5.0) == 0.0)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 100
