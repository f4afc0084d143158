"""Per-key request rates and text quotas: how they are written, parsed and enforced in memory.

A *rate* (``20/s``, ``100/min``, ``5000/hour``) limits requests with a token bucket: bursts up to
``burst`` requests pass at once, then requests flow at ``per_second``. A *quota* (``100000/month``)
limits texts per UTC calendar window; the count itself lives in the usage table (see
``AccessControl``), so it survives restarts.

    >>> Rate.parse("100/min")
    Rate(per_second=1.6666666666666667, burst=2)
    >>> str(Rate.parse("100/min")), str(Quota.parse("100000/month"))
    ('100/min', '100000/month')
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np

from tunelab.errors import ConfigError, shortened

Period = Literal["hour", "day", "month"]

_RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+?)s?\s*(?::\s*(\d+))?\s*$")
_QUOTA_PERIODS: dict[str, Period] = {"h": "hour", "hour": "hour", "day": "day", "d": "day", "month": "month"}
# Thousands separators as people write them: commas in groups of three (1,000,000) or underscores
# between digits as Python reads them (1_000); "1,,0" or "1,5" was read as 10 or 15 without a word.
_QUOTA_RE = re.compile(r"^\s*(\d{1,3}(?:,\d{3})+|\d+(?:_\d+)*)\s*/\s*([a-z]+?)s?\s*$")


#: The largest count a rate, a burst or a quota may give: far past any real limit, and a number the
#: databases' 64-bit integers hold. Longer digits failed as a 500 over HTTP ("Exceeds the limit (4300
#: digits)", or infinity from float) and "unexpected ValueError" from `tunelab keys create`.
MAX_COUNT = 10**12


def _within(digits: str, text: str, what: str) -> str:
    """``digits`` when the count they write is at most ``MAX_COUNT``, else a one-line ``ConfigError``."""
    whole = digits.replace("_", "").replace(",", "").split(".")[0].lstrip("0")
    if len(whole) > len(str(MAX_COUNT)) or (whole and int(whole) > MAX_COUNT):
        raise ConfigError(
            f"{what} {shortened(str(text))}: use at most {MAX_COUNT:,} (leave it out for no limit)"
        )
    return digits


def _default_burst(per_second: float) -> int:
    """One second's worth of requests, at least one: a client may send its per-second share at once."""
    return max(1, math.ceil(per_second - 1e-9))


@dataclass(frozen=True)
class Rate:
    """A request rate: ``per_second`` steady flow, bursts of up to ``burst`` requests.

    Written ``N/s``, ``N/min`` or ``N/hour``; ``20/s:50`` sets the burst explicitly (the default
    is one second's worth, at least 1).
    """

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)):
            raise ConfigError(f"rate {self.per_second!r}/s: use a positive number of requests")
        if self.burst < 1:
            raise ConfigError(f"rate burst {self.burst!r}: use 1 or more")

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"20/s"``, ``"100/min"``, ``"5000/hour"`` (optionally ``":BURST"``) -> ``Rate``."""
        m = _RATE_RE.match(str(text).lower())
        if not m or m.group(2) not in _RATE_UNITS:
            raise ConfigError(
                f"rate {shortened(str(text))}: write requests per unit, e.g. 20/s, 100/min or 5000/hour "
                "(optionally :BURST, e.g. 20/s:50)"
            )
        count = float(_within(m.group(1), text, "rate"))
        if count <= 0:
            raise ConfigError(f"rate {shortened(str(text))}: the number of requests must be positive")
        per_second = count / _RATE_UNITS[m.group(2)]
        burst = int(_within(m.group(3), text, "rate burst")) if m.group(3) else _default_burst(per_second)
        return cls(per_second=per_second, burst=burst)

    @classmethod
    def from_stored(cls, text: str) -> Rate:
        """A rate as the store holds it: ``parse``'s forms, and "2.77778e-05/s", which keys created
        before rates were written in plain digits hold (0.1/hour then; every key list failed on it)."""
        legacy = re.fullmatch(r"(\d+(?:\.\d+)?e-\d+)/s(?::(\d+))?", str(text).strip())
        if legacy is None:
            return cls.parse(text)
        per_second = float(legacy.group(1))
        burst = int(legacy.group(2)) if legacy.group(2) else _default_burst(per_second)
        return cls(per_second=per_second, burst=burst)

    def __str__(self) -> str:
        # Plain digits per hour, exact enough to read back: "{:g}/s" wrote 0.1/hour as 2.77778e-05/s,
        # which parse() refused, and slower rates as 0/s.
        # at 12 significant digits: 0.0001/s came out as 0.36000000000000004/hour (float noise)
        per_hour = np.format_float_positional(float(f"{self.per_second * 3600:.12g}"), trim="-")
        text = f"{per_hour}/hour"
        for unit, seconds in (("s", 1), ("min", 60), ("hour", 3600)):
            count = self.per_second * seconds
            if round(count) >= 1 and abs(count - round(count)) < 1e-6 * count:
                text = f"{round(count)}/{unit}"
                break
        return text if self.burst == _default_burst(self.per_second) else f"{text}:{self.burst}"


@dataclass(frozen=True)
class Quota:
    """At most ``limit`` texts per UTC calendar ``period`` (``hour``, ``day`` or ``month``)."""

    limit: int
    period: Period

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ConfigError(f"quota {self.limit!r}/{self.period}: the limit must be 1 or more")
        if self.period not in ("hour", "day", "month"):
            raise ConfigError(f"quota period {self.period!r}: use hour, day or month")

    @classmethod
    def parse(cls, text: str) -> Quota:
        """``"100000/month"``, ``"5000/day"``, ``"100/hour"`` -> ``Quota``."""
        m = _QUOTA_RE.match(str(text).lower())
        if not m or m.group(2) not in _QUOTA_PERIODS:
            raise ConfigError(
                f"quota {shortened(str(text))}: write texts per period, e.g. 100000/month, 5000/day "
                "or 100/hour"
            )
        limit = int(_within(m.group(1), text, "quota").replace("_", "").replace(",", ""))
        if limit < 1:
            raise ConfigError(f"quota {shortened(str(text))}: the limit must be 1 or more")
        return cls(limit=limit, period=_QUOTA_PERIODS[m.group(2)])

    def __str__(self) -> str:
        return f"{self.limit}/{self.period}"

    def window_start(self, now: datetime) -> datetime:
        """Start of the UTC calendar hour/day/month holding ``now`` (naive times are taken as UTC)."""
        now = as_utc(now)
        if self.period == "hour":
            return now.replace(minute=0, second=0, microsecond=0)
        if self.period == "day":
            return now.replace(hour=0, minute=0, second=0, microsecond=0)
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)

    def window_end(self, now: datetime) -> datetime:
        """When the window holding ``now`` ends, i.e. when the quota resets."""
        start = self.window_start(now)
        if self.period == "hour":
            return start + timedelta(hours=1)
        if self.period == "day":
            return start + timedelta(days=1)
        return (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; naive values are taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class TokenBucket:
    """A thread-safe token bucket for one key's requests.

    Starts full (``rate.burst`` tokens) and refills at ``rate.per_second``. ``clock`` is injectable
    so tests can drive time; by default it is ``time.monotonic`` (immune to wall-clock jumps).
    """

    def __init__(self, rate: Rate, clock: Callable[[], float] | None = None) -> None:
        self.rate = rate
        self._clock = clock or time.monotonic
        self._tokens = float(rate.burst)
        self._last: float | None = None
        self._lock = threading.Lock()

    def try_take(self, now: float | None = None) -> float:
        """Take one token: ``0.0`` if allowed, else the seconds until a token will be available."""
        with self._lock:
            now = self._clock() if now is None else now
            if self._last is not None and now > self._last:
                refill = (now - self._last) * self.rate.per_second
                self._tokens = min(float(self.rate.burst), self._tokens + refill)
            if self._last is None or now > self._last:
                self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate.per_second
