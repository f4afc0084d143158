"""Rolling windows per topic and company, and alerts when negative coverage surges above its baseline.

Pure: documents go in with their own (event) time, alerts come out; no clock, no I/O, so a replay
of the same stream gives the same alerts. Time is cut into ``step`` buckets; the window is the
last ``window`` of buckets and its baseline the windows that ended before it, over ``baseline``.
Two methods score the current window against the baseline (``detector.method``):

**cusum** (the default): a Poisson CUSUM on each key's negative documents per step, designed to
find a rise of the negative rate to ``shift`` times the baseline rate ``lambda0``:
``S = max(0, S + neg * ln(shift) - (shift - 1) * lambda0)`` per step, an alert when ``S >= h``.
``S`` is the log-likelihood ratio, in nats, of "the rate is shift x baseline" against "it is the
baseline" over the recent stretch that supports the surge most, so ``h`` reads as odds of
``e**h`` to one. The recursion is run over the current window's steps from ``S = 0`` (a CUSUM
with one window of memory): it is then a function of the window's buckets alone, so late
documents, undo and a restart's warm-up need no state of their own. ``lambda0`` is a robust
mean of the baseline windows' negative counts (winsorised above the median, scaled to each
window's feed volume, so yesterday's surge does not hide today's), scaled by how busy the whole
feed is now (below), then floored at ``_CUSUM_FLOOR`` negatives a window, so that a key with no
negatives in its baseline does not alert on a few stray documents. Both methods' baselines take
only the windows in which the feed (any key) had documents: a night or a weekend of a
business-hours feed says nothing of a key's usual rate.

**The feed's volume.** News has a daily cycle: with ``lambda0`` the mean over whole days, the busy
half of each day looked like a surge on every busy key (13.74 false alerts a simulated week on the
benchmark's stream with a +-50% daily cycle, against 0.53 on the flat one). So the CUSUM expects
``lambda0 x ratio`` negatives a window, ``ratio`` being the documents of the rest of the feed
(every document not of this key) in the current window over their mean in the same baseline
windows: the key's baseline negatives per document of the feed, times the feed's volume now. Its
own documents are left out so that its surge does not raise its own expectation. ``ratio`` is 1
when the rest of the feed had under ``min_volume`` documents a baseline window (a feed of one key,
or too thin to say how busy it is), is read one standard deviation high when the count is under
its mean (``feed_ratio``), and is kept within ``FEED_RATIO`` (see there). The z-score is not
scaled (see ``Detector._score``).

With ``share: true`` a Bernoulli CUSUM on each document's being negative runs next to the
Poisson one (the odds of negative ``shift`` times the baseline share; a share needs no scaling by
volume), for a surge of the share when the volume falls.

**zscore**: two levels per window, each a robust z-score against the baseline windows (median
and MAD scaled to a normal sigma):

- negative **volume**, on the Anscombe scale ``sqrt(x + 3/8)``, where Poisson counts have a
  standard deviation of about 1/2 whatever their mean;
- negative **share**, on the arcsine scale ``asin(sqrt((neg + 3/8) / (n + 3/4)))``, where a
  binomial share's standard deviation is about ``1 / (2 sqrt(n))``.

Those sampling deviations are floors on the MAD: a quiet baseline (all zeros, MAD 0) does not
make one stray negative document a huge z-score, and the z-scores of rare and frequent keys mean
the same.

**The present.** Windows end, and episodes start and end, at the stream's present: the newest
document time, with one exception. A document dated more than ``lead_s`` (5 minutes; a quarter of
the window when that is less) ahead of the present but less than a whole ring is held, counted
nowhere yet: one document from a feed with a wrong clock (or a local time read as UTC) stamped 50
minutes ahead would otherwise move every key's current window 50 minutes on, and the documents at
the real time would count only as baseline: a surge among them never alerted, and alerts took the
future time as their start. A held document counts (in time order, through the usual path) once
the present comes within ``lead_s`` of it, or as soon as the next document is dated no earlier
than ``lead_s`` before it: the stream moved on (a silence ended, a replay skipped ahead), and the
present moves with it, one document late. A next document at the old present shows it was a
stray. This needs no wall clock, so a replay of simulated time gives the same alerts; it does not
guard against two documents in a row from the future (a whole feed ahead: the monitor's
``max_future`` refuses those in a live stream), nor, after a restart, against one that is still
the newest stored document (the replay is in time order, so nothing after it refutes it; see
``settle``). A document a whole ring or more ahead still moves the present at once and restarts
the history, as a stream silent for that long does.

An alert opens when the larger level reaches the method's threshold (``threshold`` for zscore,
``h`` for cusum) with at least ``min_volume`` negative documents in the window; the key then
stays in its episode (no new alert) until the level falls back to ``release`` (hysteresis; for
cusum by default ``S`` back to 0, the CUSUM's own reset). When the present jumps several steps (a
silent feed's next document), the episode ends at the first step between at which it fell back.
This is written by hand: the libraries that detect change points (ruptures, river, adtk) work
offline or per series without these count scales and the episode logic, which is most of what is
here.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import hashlib
import heapq
import math
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tunelab.errors import ConfigError

KINDS = ("negative_share", "negative_volume")
METHODS = ("cusum", "zscore")
#: Steps a key's ring may hold (window twice + baseline): 1m steps over a 30-day baseline fit;
#: 1s steps over 3 days (259,200 a key, 2 MB each for thousands of companies) do not.
MAX_RING = 50_000
_VOLUME_SD = 0.5  # Anscombe: sqrt(Poisson + 3/8) has standard deviation ~1/2
_MAD_TO_SIGMA = 1.482602218505602  # 1 / Phi^-1(3/4): a normal sample's MAD times this is its sigma
# The CUSUM's baseline is at least half a negative document a window: a key with no negatives in
# its baseline would otherwise have no drift, and a few stray negatives would pile up to an alert.
_CUSUM_FLOOR = 0.5
#: Bounds of the CUSUM's feed-volume ratio (see the module docstring). Low, 0.5: a key whose documents
#: do not follow the feed's (its own source, another time zone) is at worst expected at half its
#: usual rate while the feed is quiet, about where that rate adds nothing to the statistic on average
#: (``ln(shift) / (shift - 1)`` of the expected rate: 0.55 for shift 3); lower, such a key would alert
#: every quiet night, and a window of a few documents (the first minutes after a silence) would judge
#: every key against next to nothing. High, 2: a busy hour at up to twice a mean that includes the
#: nights is expected in full; more is a volume the baseline never saw (a new source, one client's
#: flood of one topic), and at 4 such a flood muted every other key (an hour of 10 neutral documents a
#: minute hid a surge of 14 negatives in a window expected to hold 3).
FEED_RATIO = (0.5, 2.0)
#: The rest of the feed's documents a baseline window at which its ratio counts half: the ratio is
#: pulled towards 1 by ``mean / (mean + FEED_SHRINK_DOCS)``. A thin rest (a key that is most of the
#: feed, beside a few documents of others) is a noisy ratio: unshrunk, its chance lows halved the big
#: key's expectation and alerted on a flat feed (5 false alerts in 7 days with the rest at 6 documents
#: a window); the benchmark's rest, ~400 a window, keeps 93% of its swing.
FEED_SHRINK_DOCS = 30
#: Most topics and companies a monitor watches at once (``detector.max_keys``): each is two rings
#: of ``ring_steps`` int32 buckets, 35 KB with the defaults (4,379 steps), so 2,000 are ~70 MB. Any
#: API key that may POST documents names detector keys (a document's own ``topic``, the companies an
#: NER run finds in its text): without a cap, 4,000 made-up topics held 100 MB for 3 days.
MAX_KEYS = 2_000
#: How far ahead of the present (seconds) a document may be dated and move it at once (see the
#: module docstring): clock skew between a feed and this host; less for windows under 20 minutes.
LEAD_S = 300
#: Most documents held at once (dated ahead of the present, see the module docstring): a feed with a
#: wrong clock next to a right one has each of its documents held and refuted, and they waited for
#: the present to reach them: 100,000 took 29 MB and 4 s to count, under the monitor's lock. Past
#: this many the oldest is counted at once, as it would be without holding (~3 MB at the cap).
MAX_HELD = 10_000
# Each method's defaults for the fields left None. cusum: chosen on dev streams (seeds 1 and 2 of
# benchmarks/monitor_detector_dev.py, never the benchmark's seed 0); zscore: as before the CUSUM.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "cusum": {"window_s": 1800, "baseline_s": 3 * 86_400, "release": 0.0},
    "zscore": {"window_s": 900, "baseline_s": 86_400, "release": 2.0},
}


#: The detector's plain attributes a failed batch puts back as they were (``Detector.transaction``);
#: the rings are saved per key touched, the held documents apart.
_UNDONE_SCALARS = (
    "began",
    "first_bucket",
    "now_bucket",
    "newest",
    "late",
    "unwatched",
    "evicted",
    "last_unwatched",
    "_full_at",
    "_lost_at",
)


@dataclass(frozen=True)
class DetectorSettings:
    """How windows are cut and when an alert opens and closes (the ``detector:`` section).

    Attributes:
        window_s: the rolling window, seconds; for cusum also its memory. None: 30 minutes
            (cusum), 15 minutes (zscore).
        step_s: the bucket the window slides by; divides ``window_s``.
        baseline_s: how far back the baseline windows reach. None: 3 days (cusum), 1 day (zscore).
        threshold: zscore: the robust z-score that opens an alert.
        release: level at or under which an episode ends and the key re-arms, in the method's
            unit and below its threshold; None: 2 (zscore), 0 (cusum: ``S`` back to zero).
        min_volume: fewest negative documents in the window for an alert.
        min_history: share of ``baseline_s`` the stream must have run before any alert.
        max_docs: most triggering document ids an alert carries (the latest).
        method: ``cusum`` or ``zscore`` (see the module docstring).
        h: cusum: the log-likelihood ratio (nats) that opens an alert.
        shift: cusum: the multiple of the baseline negative rate it is designed to find.
        share: cusum: also run the Bernoulli CUSUM on the negative share.
        max_keys: most topics and companies watched at once, besides the monitor's listed topics
            (see ``Detector``); ~35 KB each with the defaults (``ring_steps`` x 8 bytes).
    """

    window_s: int | None = None  # an int once made (None: the method's default)
    step_s: int = 60
    baseline_s: int | None = None  # likewise
    threshold: float = 4.0
    release: float | None = None
    min_volume: int = 5
    min_history: float = 0.25
    max_docs: int = 50
    method: str = "cusum"
    h: float = 10.0  # chosen on dev streams, like _DEFAULTS["cusum"]
    shift: float = 3.0
    share: bool = False
    max_keys: int = MAX_KEYS

    def __post_init__(self) -> None:
        problems = []
        if self.method not in METHODS:
            problems.append(f"detector.method: {self.method!r} must be one of {', '.join(METHODS)}")
        for name, value in _DEFAULTS.get(self.method, _DEFAULTS["cusum"]).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for name in ("window_s", "step_s", "baseline_s", "min_volume", "max_docs", "max_keys"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                label = name.removesuffix("_s") if name in ("window_s", "step_s", "baseline_s") else name
                problems.append(f"detector.{label}: {value!r} must be a whole number >= 1")
        for name in ("threshold", "h"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                problems.append(f"detector.{name}: {value!r} must be a number > 0")
        if isinstance(self.shift, bool) or not isinstance(self.shift, int | float) or not self.shift > 1:
            problems.append(
                f"detector.shift: {self.shift!r} must be a number > 1 (the multiple of the baseline "
                "negative rate to find, e.g. 3)"
            )
        if not isinstance(self.share, bool):
            problems.append(f"detector.share: {self.share!r} must be true or false")
        release = self.release
        if isinstance(release, bool) or not isinstance(release, int | float) or not release >= 0:
            problems.append(f"detector.release: {release!r} must be a number >= 0")
        elif self.method == "zscore" and not release > 0:
            problems.append(f"detector.release: {release!r} must be a number > 0")
        if not problems:
            if self.window_s % self.step_s:
                problems.append(
                    f"detector.step: {self.step_s}s must divide the window ({self.window_s}s), "
                    "e.g. 1m for 15m"
                )
            if self.baseline_s < 2 * self.window_s:
                problems.append(
                    f"detector.baseline: {self.baseline_s}s must be at least two windows "
                    f"({2 * self.window_s}s)"
                )
            if self.ring_steps > MAX_RING:
                problems.append(
                    f"detector.step: {self.step_s}s keeps {self.ring_steps:,} steps of window and baseline "
                    f"for every topic and company (the limit is {MAX_RING:,}: 8 bytes each, a key); "
                    "use a longer step"
                )
            opens = "threshold" if self.method == "zscore" else "h"
            if self.release >= getattr(self, opens):
                problems.append(
                    f"detector.release: {self.release} must be below detector.{opens} "
                    f"({getattr(self, opens)})"
                )
        # not a bool: `min_history: true` loaded as 1 (a whole baseline of history before any alert)
        min_history = self.min_history
        if isinstance(min_history, bool) or not (
            isinstance(min_history, int | float) and 0 <= min_history <= 1
        ):
            problems.append(f"detector.min_history: {self.min_history!r} must be between 0 and 1")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def opens_at(self) -> float:
        """The level that opens an alert: ``threshold`` (zscore) or ``h`` (cusum)."""
        return self.threshold if self.method == "zscore" else self.h

    @property
    def lead_s(self) -> int:
        """Seconds a document may be dated ahead of the present and move it at once: ``LEAD_S``,
        at most a quarter of the window (a present moved on by more hides a surge's start)."""
        return max(1, min(LEAD_S, self.window_s // 4))

    @property
    def window_steps(self) -> int:
        return self.window_s // self.step_s

    @property
    def baseline_steps(self) -> int:
        return max(1, self.baseline_s // self.step_s)

    @property
    def ring_steps(self) -> int:
        """Steps a key keeps: the newest window and every baseline window's buckets."""
        return 2 * self.window_steps + self.baseline_steps - 1

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Alert:
    """One episode of a key: opened when its level crossed the threshold, ended when it fell back.

    ``id`` is stable for the same monitor, key and start (a replay gives the same ids): it is the
    idempotency key a webhook receiver uses to drop duplicates.
    """

    id: str
    monitor: str
    key: str  # "topic:<name>" or "company:<name>"
    kind: str  # one of KINDS: the level that crossed first
    started_at: datetime
    # The level that opened it: the robust z-score (zscore), or the CUSUM's log-likelihood ratio
    # in nats (cusum: the odds of e**level to one that the rate is shift x baseline).
    level: float
    # The baseline: a share (0..1) or negatives a window; zscore: the baseline windows' median;
    # cusum: the negatives the CUSUM expected (the robust mean times the feed volume ratio, floored).
    baseline: float
    observed: float  # the window's value when it opened, in the same unit
    docs: list[str] = field(default_factory=list)
    ended_at: datetime | None = None

    @property
    def scope(self) -> str:
        return self.key.split(":", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(":", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "monitor": self.monitor,
            "key": self.key,
            "kind": self.kind,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "level": round(self.level, 3),
            "baseline": round(self.baseline, 4),
            "observed": round(self.observed, 4),
            "docs": list(self.docs),
        }


def alert_id(monitor: str, key: str, started_at: datetime, doc_id: str = "") -> str:
    """The episode's id, deterministic (a replay gives the same): its key, start and the document
    that opened it. The start alone is not enough: a feed stamped to the minute can end an episode
    and open the next one at the same time, and the second would take the first one's id (and
    its delivered mark) in the store."""
    text = f"{monitor}|{key}|{started_at.isoformat()}" + (f"|{doc_id}" if doc_id else "")
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class WindowStats:
    """A key's current window: documents, negative ones, and the two levels (None: no baseline yet).

    The levels are in the method's unit: robust z-scores (zscore) or the CUSUM statistics ``S``
    in nats (cusum; ``share_level`` is None unless ``share`` is on).
    """

    count: int
    negative: int
    share_level: float | None
    volume_level: float | None

    @property
    def share(self) -> float:
        return self.negative / self.count if self.count else 0.0

    @property
    def level(self) -> float | None:
        levels = [v for v in (self.share_level, self.volume_level) if v is not None]
        return max(levels) if levels else None


@dataclass(frozen=True)
class _Baseline:
    volume_center: float
    volume_scale: float
    volume_median: float
    share_center: float | None  # None: no baseline window had documents
    share_scale: float
    share_median: float
    rate: float = 0.0  # cusum: robust mean negatives a window
    count_rate: float = 0.0  # cusum: robust mean documents a window
    feed_rate: float = 0.0  # cusum: mean documents of the rest of the feed (not this key's) a window


def _robust(values: np.ndarray) -> tuple[float, float]:
    """Median and MAD scaled to a normal sigma (what ``scipy.stats.median_abs_deviation(x,
    scale="normal")`` gives; two numpy calls here, because scipy's argument handling costs ~1 ms a
    call, most of the detector's time)."""
    center = float(np.median(values))
    return center, float(np.median(np.abs(values - center))) * _MAD_TO_SIGMA


def _share_scale(count: float, neg: float) -> float:
    """Arcsine-transformed share of ``neg`` in ``count`` (Anscombe's binomial variant)."""
    return math.asin(math.sqrt((neg + 0.375) / (count + 0.75)))


def _winsorised_mean(values: np.ndarray, ratios: np.ndarray | None = None) -> float:
    """Mean of counts with those far above the median cut back to ``median + 3 sqrt(median + 1) + 1``.

    For Poisson counts the cut is over 3 standard deviations up, so a calm baseline loses almost
    nothing (under 0.5% of its mean), while the windows of an earlier surge count as high, not as
    many times the rate: the baseline rate stays near the calm one. A median alone would be robust
    too, but the median of small counts moves in whole documents (3 or 4 for a mean of 3.6).

    ``ratios``: each window's feed volume ratio (``feed_ratio``); the median is then that of the
    counts divided by their ratio, times the window's own ratio, the level that window's volume
    predicts. Against one median, a daily cycle's busy windows were cut as if surges (the median is
    the quiet majority's): the mean came out 15% low on a feed 4 times as busy by day as by night.
    """
    if ratios is None:
        level: float | np.ndarray = float(np.median(values))
    else:
        level = float(np.median(values / ratios)) * ratios
    return float(np.minimum(values, level + 3.0 * np.sqrt(level + 1.0) + 1.0).mean())


def baseline_of(
    counts: np.ndarray, negatives: np.ndarray, others: float = 0.0, ratios: np.ndarray | None = None
) -> _Baseline:
    """Centre and scale of the baseline windows' values (window sums, one entry per window).

    ``others``: the rest of the feed's mean documents a window over the same windows; ``ratios``:
    each window's feed volume ratio (``feed_ratio``; None: all 1), against which the CUSUM's means
    are winsorised (``_winsorised_mean``). Those means stay means of the windows' counts, so the
    CUSUM's expectation ``rate x feed_ratio(now)`` is the key's negatives per document of the rest
    of the feed over the baseline, times that rest's documents now."""
    volume = np.sqrt(negatives + 0.375)
    v_center, v_mad = _robust(volume)
    seen = counts > 0
    if seen.any():
        shares = np.arcsin(np.sqrt((negatives[seen] + 0.375) / (counts[seen] + 0.75)))
        s_center, s_mad = _robust(shares)
        s_median = float(np.median(negatives[seen] / counts[seen]))
    else:
        s_center, s_mad, s_median = None, 0.0, 0.0
    return _Baseline(
        v_center,
        v_mad,
        float(np.median(negatives)),
        s_center,
        s_mad,
        s_median,
        _winsorised_mean(negatives, ratios),
        _winsorised_mean(counts, ratios),
        others,
    )


def _gap(later: datetime, earlier: datetime) -> float:
    """Seconds from ``earlier`` to ``later``, by timestamps: adding a timedelta to a time near the
    years 1 or 9999 (both parse) overflows."""
    return later.timestamp() - earlier.timestamp()


def levels(count: int, neg: int, base: _Baseline) -> tuple[float | None, float]:
    """(share level, volume level) of a window with ``count`` documents, ``neg`` of them negative."""
    volume = (math.sqrt(neg + 0.375) - base.volume_center) / max(base.volume_scale, _VOLUME_SD)
    if count == 0 or base.share_center is None:
        return None, volume
    floor = 0.5 / math.sqrt(count)  # the binomial deviation of this window's share, arcsine scale
    share = (_share_scale(count, neg) - base.share_center) / max(base.share_scale, floor)
    return share, volume


def top_level(share: float | None, volume: float | None, base: _Baseline | None) -> float:
    """The larger of a window's levels; -inf without a baseline. That includes a history restarted
    (time jumped past a whole ring): none is left to say a surge goes on, as a ring of zeros ended
    it before; kept open, it would swallow the key's next alert for as long as ``min_history``."""
    if volume is None or base is None:
        return -math.inf
    return max(volume, share if share is not None else -math.inf)


def _max_suffix(steps: np.ndarray) -> float:
    """``max(0, S + x)`` run over ``steps`` from ``S = 0``: the largest sum of a run of steps that
    ends at the last one, or 0."""
    return max(0.0, float(np.cumsum(steps[::-1]).max())) if len(steps) else 0.0


def cusum_rate(base: _Baseline, ratio: float = 1.0) -> float:
    """The CUSUM's baseline negatives a window: the robust mean times the feed's volume ``ratio``
    (``feed_ratio``), at least ``_CUSUM_FLOOR`` (the floor's reason holds however busy the feed)."""
    return max(base.rate * ratio, _CUSUM_FLOOR)


def feed_ratio(others_now: int, base: _Baseline, min_docs: int) -> float:
    """How busy the rest of the feed is now against its baseline: ``others_now`` (its documents in
    the current window) over its mean a baseline window, within ``FEED_RATIO``; 1 when that mean is
    under ``min_docs`` (a feed of this key alone has 0: nothing to divide by or to compare with),
    pulled towards 1 the thinner the rest of the feed is (``FEED_SHRINK_DOCS``).

    Below the mean, the count is read one standard deviation high, ``(others_now + sqrt(others_now))
    / mean`` (at most 1): it is a Poisson count itself, and a key judged against one that came out
    low by chance alerts more. Read as it came, it raised the false alerts of a flat feed by about
    45% (simulated; on the dev streams the new false alerts came at ratios of 0.87-0.99). A count
    above the mean is taken as it is: one high by chance only makes an alert rarer, and the busy
    hours, where a daily cycle's false alerts came, are expected in full."""
    return float(_ratios(np.asarray([others_now], dtype=float), base.feed_rate, min_docs)[0])


def _ratios(others: np.ndarray, mean: float, min_docs: int) -> np.ndarray:
    """``feed_ratio`` of each of ``others`` (rest-of-the-feed document counts of windows) against
    ``mean``: the one copy of the rule, which the baseline's windows and the current one share."""
    if not mean >= max(min_docs, 1):
        return np.ones_like(others, dtype=float)
    below = np.minimum((others + np.sqrt(others)) / mean, 1.0)
    ratio = 1.0 + (np.where(others >= mean, others / mean, below) - 1.0) * mean / (mean + FEED_SHRINK_DOCS)
    return np.clip(ratio, *FEED_RATIO)


def cusum_share(base: _Baseline) -> float | None:
    """The Bernoulli CUSUM's baseline negative share (None: no documents in the baseline), with the
    same floor: at least half a negative document in a window of the usual volume."""
    if base.count_rate <= 0:
        return None
    return min(cusum_rate(base) / base.count_rate, 0.999)


def cusum_levels(
    counts: np.ndarray,
    negatives: np.ndarray,
    base: _Baseline,
    window_steps: int,
    shift: float,
    share: bool,
    ratio: float = 1.0,
) -> tuple[float | None, float]:
    """(share, volume) CUSUM statistics, nats, over the window's buckets (oldest first).

    Volume: Poisson, rate ``lambda0`` a step (``cusum_rate``: scaled by the feed's volume
    ``ratio``) against ``shift * lambda0``: each step adds ``neg ln(shift) - (shift - 1) lambda0``.
    Share (only when ``share``; a share needs no scaling by volume): Bernoulli, each document
    negative with probability ``p0`` against the odds ``shift`` times as high, ``p1 = shift p0 /
    (1 - p0 + shift p0)``: a step adds ``neg ln(p1 / p0) + (n - neg) ln((1 - p1) / (1 - p0))``.
    The current step counts in full (its drift too), so a surge alerts during its first minute
    when the documents are there.
    """
    lam = cusum_rate(base, ratio) / window_steps
    volume = _max_suffix(negatives * math.log(shift) - (shift - 1.0) * lam)
    p0 = cusum_share(base)
    if not share or p0 is None:
        return None, volume
    p1 = shift * p0 / (1.0 - p0 + shift * p0)
    up, down = math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))
    return _max_suffix(negatives * up + (counts - negatives) * down), volume


class _Key:
    """One topic's or company's buckets in a ring: counts and negatives of the last ``size`` steps."""

    def __init__(self, size: int, bucket: int) -> None:
        self.size = size
        # int32: a key's ring is ~4,400 buckets with the 3-day baseline, and a feed may name
        # thousands of companies; sums and cumulative sums come out as int64 anyway.
        self.counts = np.zeros(size, dtype=np.int32)
        self.negatives = np.zeros(size, dtype=np.int32)
        self.bucket = bucket  # the newest bucket the ring holds
        self.last = bucket  # the newest bucket a document was counted in (which key to let go first)
        self.neg_docs: deque[tuple[int, str]] = deque()  # (bucket, doc id) of negatives in the window
        self.cached: tuple[int, _Baseline | None] | None = None
        self.episode: Alert | None = None
        # The bucket this key's history counts from when that is later than the stream's start
        # (``Detector._lost_at``): None, the stream's start (its zeros before are real).
        self.born: int | None = None

    def roll_to(self, bucket: int) -> None:
        if bucket <= self.bucket:
            return
        gap = bucket - self.bucket
        if gap >= self.size:
            self.counts[:] = 0
            self.negatives[:] = 0
        else:
            idx = np.arange(self.bucket + 1, bucket + 1) % self.size
            self.counts[idx] = 0
            self.negatives[idx] = 0
        self.bucket = bucket

    def add(self, bucket: int, negative: bool) -> bool:
        """Count a document; ``False`` if it is older than the ring reaches (too late to count)."""
        self.roll_to(bucket)
        if bucket <= self.bucket - self.size:
            return False
        slot = bucket % self.size
        self.last = max(self.last, bucket)
        self.counts[slot] += 1
        self.negatives[slot] += int(negative)
        if self.cached is not None and bucket <= self.cached[0] - 1:
            self.cached = None  # a late document changes the baseline
        return True

    def series(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        """Bucket counts and negatives for buckets ``first..last`` (all within the ring)."""
        idx = np.arange(first, last + 1) % self.size
        return self.counts[idx], self.negatives[idx]


class Detector:
    """Windows and alert episodes for every topic and company of one monitor.

    Example:
        >>> detector = Detector("markets", DetectorSettings())  # doctest: +SKIP
        >>> for doc in stream:  # doctest: +SKIP
        ...     keys = ["topic:earnings", "company:acme"]
        ...     for alert in detector.observe(keys, doc.time, doc.negative, doc.id):
        ...         print(alert.key, "opened" if alert.ended_at is None else "ended")

    **At most ``max_keys`` keys.** Whoever sends documents names keys (a document's own topic, the
    companies in its text), and each key holds two rings (~35 KB). A new key past the cap takes the
    place of the key least recently given a document, among those without an open episode and
    without a document in the current window (their state says least about an alert now); when
    there is none, the new key is not watched: its documents count under their other keys, and
    ``unwatched`` counts them (the monitor stores them all; trends read the store). Letting go of
    active keys instead would let a flood of made-up names wipe every real key's baseline each
    minute. ``protected`` keys (the monitor's listed topics) are always watched and not counted.
    A key made once any key's documents went uncounted (let go, refused, left out of a restart)
    counts its history from then: it may be one of those, whose baseline is not the zeros held.
    """

    def __init__(
        self, monitor: str, settings: DetectorSettings | None = None, *, protected: Iterable[str] = ()
    ) -> None:
        self.monitor = monitor
        self.settings = settings or DetectorSettings()
        self._ring = self.settings.ring_steps
        self._keys: dict[str, _Key] = {}
        self._protected = frozenset(protected)
        # Documents' keys not counted because max_keys keys were watched (each key of a document
        # once), keys let go to make room, and the latest key left out (for the monitor's log line).
        self.unwatched = 0
        self.evicted = 0
        self.last_unwatched: str | None = None
        # The present (now_bucket) at which no key could be let go: not looked for again until
        # time moves, so a flood of new names costs one scan of the keys a step, not one a document.
        self._full_at: int | None = None
        self.first_bucket: int | None = None  # when the stream started (the warm-up counts from it)
        # The stream's first present: the first document time counted. The monitor stores it and
        # sets it back before a restart's warm-up, where it is the earliest the history may start
        # (``_started``): an old article stored among the replayed documents is not the feed's start.
        self.began: datetime | None = None
        # Documents of any key a step (one ``_Key`` ring for the whole feed, made with the present):
        # a baseline window in which the feed had none (a night, a weekend of a business-hours
        # feed) says nothing of a key's usual rate and is left out of its baseline (``_baseline``).
        self._feed: _Key | None = None
        self.now_bucket: int | None = None
        # The present: the newest document time counted (a held one is not, see the module
        # docstring). Episodes start and end at it, never at a late document's own (earlier) time,
        # which could end an episode before it started.
        self.newest: datetime | None = None
        self.late = 0  # documents too old to count in any window
        self._undo: dict[str, _Key | None] | None = None  # inside transaction(): keys as they were
        self._lead = self.settings.lead_s
        # Documents dated too far ahead of the present to move it yet (see the module docstring):
        # a heap, oldest first, then in the order held, of (time, seq, keys, negative, id), at most
        # MAX_HELD; and the time of the last one held, which the next document confirms or not.
        self._held: list[tuple[datetime, int, tuple[str, ...], bool, str]] = []
        self._held_seq = 0
        self._waiting: datetime | None = None
        # The newest bucket at which a key's documents went uncounted (a key let go at the cap, a
        # document's key refused there, keys left out of a restart's warm-up), None: never. A key
        # made after it counts its history from there, not from the stream's start: it may be one
        # of those, and the zeros of the buckets it was not watched would read as a quiet history
        # (an evicted company came back at its usual rate and alerted at 10.1 over a 0.5 baseline).
        # A key made while none was lost keeps the stream's start: the detector saw every document
        # of the stream, so its zeros are what the key had (a new name's first surge alerts).
        self._lost_at: int | None = None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Undo every change made inside the block when it raises.

        The monitor counts a batch, then stores it with the alerts it opened in one database
        transaction. When that commit fails, the windows and episodes must be as before it, or a
        retry counts the batch twice and the alert it opened is never stored (the key is already
        in its episode). Each key is copied the first time the block changes it, so the cost is
        the keys one batch touches, not every key's ring (a deep copy of the whole detector would
        copy thousands of rings per batch on a feed naming many companies).
        """
        if self._undo is not None:
            raise RuntimeError("Detector.transaction is not re-entrant")
        self._undo = {}
        held = (list(self._held), self._waiting)
        feed = copy.deepcopy(self._feed)  # ~35 KB with the defaults: one ring, whatever the keys
        scalars = {name: getattr(self, name) for name in _UNDONE_SCALARS}
        try:
            yield
        except BaseException:
            for key, saved in self._undo.items():
                if saved is None:
                    self._keys.pop(key, None)
                else:
                    self._keys[key] = saved
            for name, value in scalars.items():
                setattr(self, name, value)
            self._held, self._waiting = held
            self._feed = feed
            raise
        finally:
            self._undo = None

    def _keep(self, key: str) -> None:
        """Inside ``transaction``: copy ``key``'s state (None: it is new) before it first changes."""
        if self._undo is not None and key not in self._undo:
            state = self._keys.get(key)
            self._undo[key] = copy.deepcopy(state) if state is not None else None

    # -- input ---------------------------------------------------------------------------------------

    def bucket_of(self, moment: datetime) -> int:
        return math.floor(moment.timestamp()) // self.settings.step_s

    def start_at(self, moment: datetime) -> None:
        """Say the stream had a document at ``moment`` that is not observed: a restart replays only
        the last ring of documents, and the one stored just before them tells whether the stream
        ran before them. History then counts from there, as in an unbroken run, unless the next
        document comes a whole ring later (see ``_move_to``); a moment too old to count is ignored."""
        bucket = self.bucket_of(moment)
        if self._too_old(bucket):
            return
        self._started(bucket)
        self._move_to(bucket)

    def _started(self, bucket: int) -> None:
        first = bucket if self.first_bucket is None else min(self.first_bucket, bucket)
        if self.began is not None:
            first = max(first, self.bucket_of(self.began))  # not before the stream's first present
        self.first_bucket = first

    def _too_old(self, bucket: int) -> bool:
        """``bucket`` is older than the ring reaches: a document there counts in no window."""
        return self.now_bucket is not None and bucket <= self.now_bucket - self._ring

    def _move_to(self, bucket: int) -> None:
        """Time is at ``bucket`` (or later): the newest bucket moves on; a jump past a whole ring
        (the stream was silent that long, or what came before was one stray old document) leaves
        no counted history, so the stream counts as starting again there and ``min_history``
        holds alerts back as for a new monitor, not as if a baseline of zeros were complete."""
        if self.now_bucket is not None and bucket - self._ring >= self.now_bucket:
            self.first_bucket = bucket
        self.now_bucket = bucket if self.now_bucket is None else max(self.now_bucket, bucket)
        if self._feed is None:
            self._feed = _Key(self._ring, self.now_bucket)
        self._feed.roll_to(self.now_bucket)

    def observe(
        self, keys: Iterable[str], moment: datetime, negative: bool, doc_id: str, *, quiet: bool = False
    ) -> list[Alert]:
        """Count one document under each of ``keys`` and return the alerts it opened or ended.

        Each returned alert is a snapshot: ``ended_at`` is None when it opened, set when it ended.

        A document dated more than ``lead_s`` ahead of the present is held until the stream
        confirms it (see the module docstring); the alerts of held documents counted now come back
        here, with this one's.

        Args:
            quiet: count only (warming up from stored documents): no alert opens or ends.
        """
        unique = list(dict.fromkeys(keys))  # a key named twice counts once
        changed: list[Alert] = []
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            if _gap(waiting, moment) <= self._lead:  # the stream moved on: it was no stray
                changed += self._release(quiet, upto=waiting)
        if self._ahead(moment):
            self._held_seq += 1
            heapq.heappush(self._held, (moment, self._held_seq, tuple(unique), negative, doc_id))
            self._waiting = moment
            if len(self._held) > MAX_HELD:
                # Too many waiting: the oldest counts now, as it would without holding (the present
                # moves to it), and those it brings within reach of the present with it.
                oldest, _, keys, neg, old_id = heapq.heappop(self._held)
                changed += self._count(list(keys), oldest, neg, old_id, quiet)
                changed += self._release(quiet)
            return changed
        changed += self._count(unique, moment, negative, doc_id, quiet)
        return changed + self._release(quiet)

    def settle(self, *, quiet: bool = True) -> list[Alert]:
        """Count the document held last, still waiting for the next one to confirm it: the end of a
        restart's replay of stored documents, where the newest is the stream's last word (a sparse
        feed's latest document, 90 minutes after the one before it, is the present after a restart
        as in the run). Documents held and refuted by a later one stay held."""
        if self._waiting is None:
            return []
        waiting, self._waiting = self._waiting, None
        return self._release(quiet, upto=waiting)

    def _ahead(self, moment: datetime) -> bool:
        """``moment`` is too far ahead of the present to move it before the stream confirms it:
        more than ``lead_s``, less than a whole ring (a jump past the ring restarts the history)."""
        if self.newest is None or self.now_bucket is None or _gap(moment, self.newest) <= self._lead:
            return False
        return self.bucket_of(moment) - self._ring < self.now_bucket

    def _release(self, quiet: bool, upto: datetime | None = None) -> list[Alert]:
        """Count the held documents dated up to ``upto`` or within ``lead_s`` of the present, oldest
        first (each one counted may bring the next within reach); the alerts they opened or ended."""
        changed: list[Alert] = []
        while self._held and self.newest is not None:
            moment = self._held[0][0]
            if (upto is None or moment > upto) and _gap(moment, self.newest) > self._lead:
                break
            _, _, keys, negative, doc_id = heapq.heappop(self._held)
            changed += self._count(list(keys), moment, negative, doc_id, quiet)
        return changed

    def _count(
        self, unique: list[str], moment: datetime, negative: bool, doc_id: str, quiet: bool
    ) -> list[Alert]:
        """Count one document under ``unique`` keys now (the present moves to it if it is newer)."""
        bucket = self.bucket_of(moment)
        if self._too_old(bucket):
            # Counted nowhere, so it says nothing of when the stream started either: one document
            # dated 0001-01-01 (some feeds' "unknown") took the baseline as complete at once.
            self.late += len(unique)
            return []
        if self.now_bucket is None or bucket >= self.now_bucket:
            # Not an older one: a single old article (republished, or dated by its first version)
            # dated up to a ring before the feed's first document made the days before the monitor
            # existed a complete, silent history, and every busy key alerted at once.
            self._started(bucket)
            if self.began is None:
                self.began = moment.astimezone(UTC)
        moved_on = self.now_bucket is not None and bucket > self.now_bucket
        changed = [] if quiet else self._end_silent(bucket)
        self._move_to(bucket)
        self._see(moment)
        assert self._feed is not None  # made by _move_to
        self._feed.add(bucket, negative)
        for key in unique:
            state = self._keys.get(key)
            if state is None and not self._room_for(key):
                self.unwatched += 1
                self.last_unwatched = key
                self.history_lost(moment)
                continue
            self._keep(key)
            if state is None:
                state = self._new_key(key, bucket)
            if not state.add(bucket, negative):
                self.late += 1
                continue
            window_start = state.bucket - self.settings.window_steps
            if negative and bucket > window_start:
                # In time order, and only inside the window: a late document appended at the end
                # outlived the popping from the front and was listed as a trigger of an alert
                # whose window it was not in (and preferred by the max_docs cut, which keeps the end).
                bisect.insort(state.neg_docs, (bucket, doc_id), key=lambda entry: entry[0])
                while state.neg_docs[0][0] <= window_start:
                    state.neg_docs.popleft()
            if not quiet:
                alert = self._judge(key, state, doc_id)
                if alert is not None:
                    changed.append(alert)
        if moved_on and not quiet:
            # Time moved on: the episodes of keys without this document may have ended. Judged here,
            # not only by ``advance`` after a batch, so a batch alerts as the same documents sent
            # one at a time do (an episode left open through a batch swallowed the next surge).
            changed.extend(self._end_fallen())
        return changed

    # -- the cap on keys -----------------------------------------------------------------------------

    @property
    def watched(self) -> int:
        """Keys held that count against ``max_keys`` (the protected ones do not)."""
        return len(self._keys) - sum(1 for key in self._protected if key in self._keys)

    def _room_for(self, key: str) -> bool:
        """Whether new ``key`` may be watched: under the cap, or a key could be let go for it."""
        if key in self._protected or self.watched < self.settings.max_keys:
            return True
        if self.now_bucket is None or self._full_at == self.now_bucket:
            return False
        # Idle: no document in the current window (buckets now - window + 1 .. now).
        idle_until = self.now_bucket - self.settings.window_steps
        victim, oldest = None, idle_until + 1
        for name, state in self._keys.items():
            if state.last < oldest and state.episode is None and name not in self._protected:
                victim, oldest = name, state.last
        if victim is None:
            self._full_at = self.now_bucket
            return False
        self._keep(victim)
        del self._keys[victim]
        self.evicted += 1
        self._lost_at = self.now_bucket if self._lost_at is None else max(self._lost_at, self.now_bucket)
        return True

    def history_lost(self, moment: datetime) -> None:
        """Say that some key's documents up to ``moment`` were not counted (the monitor's warm-up
        left keys out at the cap; a document's key refused here): a key made from now on counts
        its history from then (``min_history`` holds its alerts back), not from the stream's
        start, since it may be one of those and its baseline would read as zeros."""
        bucket = self.bucket_of(moment)
        if self.now_bucket is not None:
            bucket = min(bucket, self.now_bucket)  # a held document's time is not the present yet
        self._lost_at = bucket if self._lost_at is None else max(self._lost_at, bucket)

    def _new_key(self, key: str, bucket: int) -> _Key:
        """A key not held now, made at ``bucket``: its history starts at the last loss, if any."""
        state = self._keys[key] = _Key(self._ring, bucket)
        state.born = self._lost_at
        return state

    def most_recent(self, last_seen: dict[str, int], keep: Iterable[str] = ()) -> set[str]:
        """The keys a restart watches: ``keep`` (those in an open episode), the protected ones, and
        the most recently active others (``last_seen``: key -> when it last had a document, any
        increasing number) up to ``max_keys``, so the warm-up from the store respects the cap and
        keeps the keys a live stream still names rather than the first ones it replays."""
        chosen = set(keep) | {key for key in last_seen if key in self._protected}
        room = self.settings.max_keys - len(chosen - self._protected)
        if room > 0:
            others = (key for key in last_seen if key not in chosen)
            chosen.update(heapq.nlargest(room, others, key=last_seen.__getitem__))
        return chosen

    def advance(self, moment: datetime | None = None) -> list[Alert]:
        """Move time on to ``moment`` (None: the present, the newest document time counted) and
        end the episodes that fell back; held documents it brings within reach are counted.

        A key in an episode that gets no more documents would otherwise never be looked at again.
        The monitor passes None after a batch: the batch's newest time may be a held stray's.
        """
        if moment is None:
            if self.newest is None:
                return []
            moment = self.newest
        bucket = self.bucket_of(moment)
        ended = self._end_silent(bucket)
        self._move_to(bucket)
        self._see(moment)
        ended += self._release(quiet=False)
        ended += self._end_fallen()
        silent = [
            key
            for key, state in self._keys.items()
            if state.episode is None and state.bucket + self._ring <= self.now_bucket
        ]
        # A key without documents for a whole ring holds only zeros, as a new one would: let it go,
        # or a feed naming new companies every day grows by one ring (~35 KB) a name, for good.
        for key in silent:
            self._keep(key)
            del self._keys[key]
        return ended

    def _end_silent(self, bucket: int) -> list[Alert]:
        """Before the present jumps on to ``bucket``: end the episodes whose level fell back in a step
        between, dated at the start of that step (the windows and the feed's ring roll on step by
        step). Judged only when time moves, an episode outlived a feed-wide silence and ended at the
        next document: 09:00 the next day for a surge whose window was clear by 17:05."""
        if self.now_bucket is None or bucket <= self.now_bucket + 1:
            return []
        assert self._feed is not None  # made with the present
        open_keys = [(key, state) for key, state in self._keys.items() if state.episode is not None]
        if not open_keys:
            return []
        # A window without the key's documents is at the method's floor (cusum S = 0, a volume
        # z-score <= 0), at or under release: no episode outlasts its key's last document by more
        # than a window, so the steps after that need no look.
        stop = min(bucket, max(state.last for _, state in open_keys) + self.settings.window_steps + 1)
        ended = []
        for step in range(self.now_bucket + 1, stop):
            self._feed.roll_to(step)
            at = datetime.fromtimestamp(step * self.settings.step_s, UTC)
            for key, state in open_keys:
                if state.episode is not None:
                    self._keep(key)
                    state.roll_to(step)
                    _, _, share, volume, base, _ = self._score(state)
                    alert = self._end_if_fallen(state, top_level(share, volume, base), at)
                    if alert is not None:
                        ended.append(alert)
        return ended

    def _end_fallen(self) -> list[Alert]:
        """Judge the open episodes of keys without a document in the current step; those that end."""
        assert self.now_bucket is not None
        ended = []
        for key, state in list(self._keys.items()):
            if state.episode is not None and state.bucket < self.now_bucket:
                self._keep(key)
                alert = self._judge(key, state)
                if alert is not None:
                    ended.append(alert)
        return ended

    def resume(self, open_alerts: Iterable[Alert]) -> None:
        """Put back the episodes still open when the monitor stopped (from the store)."""
        for alert in open_alerts:
            self._keep(alert.key)
            state = self._keys.get(alert.key)
            if state is None:
                bucket = self.now_bucket if self.now_bucket is not None else self.bucket_of(alert.started_at)
                state = self._new_key(alert.key, bucket)
            state.episode = alert

    # -- windows -------------------------------------------------------------------------------------

    def keys(self) -> list[str]:
        return sorted(self._keys)

    def window(self, key: str) -> WindowStats:
        """The current window of ``key`` (zeros for a key never seen)."""
        state = self._keys.get(key)
        if state is None or self.now_bucket is None:
            return WindowStats(0, 0, None, None)
        self._keep(key)  # rolling the ring on changes it
        state.roll_to(self.now_bucket)
        count, neg, share, volume, _, _ = self._score(state)
        return WindowStats(count, neg, share, volume)

    def _score(self, state: _Key) -> tuple[int, int, float | None, float | None, _Baseline | None, float]:
        """Documents and negatives of the current window, its (share, volume) levels (None: no
        baseline yet), the baseline and the feed's volume ratio the CUSUM scaled it by (1: zscore)."""
        s = self.settings
        k = s.window_steps
        counts, negatives = state.series(state.bucket - k + 1, state.bucket)
        count, neg = int(counts.sum()), int(negatives.sum())
        base = self._baseline(state)
        if base is None:
            return count, neg, None, None, None, 1.0
        ratio = 1.0
        if s.method == "cusum":
            assert self._feed is not None and self._feed.bucket == state.bucket  # rolled together
            feed, _ = self._feed.series(state.bucket - k + 1, state.bucket)
            ratio = feed_ratio(max(int(feed.sum()) - count, 0), base, s.min_volume)
            share, volume = cusum_levels(counts, negatives, base, k, s.shift, s.share, ratio)
        else:
            # The z-score is left as it was: its spread (the MAD) comes from the same baseline
            # windows, so a daily cycle already widens it (z 4 raised 0-0.53 false alerts a week on
            # the benchmark's cycling stream), and scaling its centre alone would judge the busy
            # hours against a spread that was not theirs; its share level needs no scaling.
            share, volume = levels(count, neg, base)
        return count, neg, share, volume, base, ratio

    def _baseline(self, state: _Key) -> _Baseline | None:
        """Baseline of the windows ending before the current one starts; cached per bucket."""
        if state.cached is not None and state.cached[0] == state.bucket:
            return state.cached[1]
        s = self.settings
        k, b = s.window_steps, state.bucket
        assert self._feed is not None and self._feed.bucket == b  # both rolled to the present
        first = self.first_bucket if self.first_bucket is not None else b
        if state.born is not None:
            first = max(first, state.born)  # made after keys' documents went uncounted (_lost_at)
        last_end = b - k  # the newest baseline window ends just before the current window starts
        first_end = max(b - k - s.baseline_steps + 1, first + k - 1)  # only whole windows of the stream
        result = None
        if last_end - first_end + 1 >= max(1, math.ceil(s.min_history * s.baseline_steps)):
            counts, negatives = state.series(first_end - k + 1, last_end)
            feed, _ = self._feed.series(first_end - k + 1, last_end)
            # Window sums by cumulative sums: window j covers buckets j..j+k-1 of the series.
            c, n, f = (np.concatenate(([0], np.cumsum(x))) for x in (counts, negatives, feed))
            # Only the windows in which the feed had documents: the nights and weekends of a
            # business-hours feed made its busy keys' baseline a third of their rate (and a median
            # of 0 cut the rest to 4 a window), and each of them alerted every weekday morning.
            active = (f[k:] - f[:-k]) > 0
            if active.any():
                mine = (c[k:] - c[:-k])[active].astype(float)
                # The rest of the feed (the CUSUM's volume ratio, ``feed_ratio``): a plain mean, not
                # winsorised, since its busy hours are its usual volume, not a surge.
                others = np.maximum((f[k:] - f[:-k])[active] - mine, 0.0)
                mean = float(others.mean())
                result = baseline_of(
                    mine, (n[k:] - n[:-k])[active].astype(float), mean, _ratios(others, mean, s.min_volume)
                )
        state.cached = (b, result)
        return result

    # -- episodes ------------------------------------------------------------------------------------

    def _see(self, moment: datetime) -> None:
        moment = moment.astimezone(UTC)
        self.newest = moment if self.newest is None else max(self.newest, moment)

    def _end_if_fallen(self, state: _Key, level: float, moment: datetime) -> Alert | None:
        """End ``state``'s episode at ``moment`` if ``level`` fell back: zscore under release; cusum
        at or under it (by default S back to 0, its reset). The ended alert, else None."""
        s = self.settings
        assert state.episode is not None
        fallen = level <= s.release if s.method == "cusum" else level < s.release
        if not fallen:
            return None
        ended = dataclasses.replace(state.episode, ended_at=moment.astimezone(UTC))
        state.episode = None
        return ended

    def _judge(self, key: str, state: _Key, doc_id: str = "") -> Alert | None:
        """Open or end ``key``'s episode at the newest time seen; the alert that changed, else None.

        ``doc_id``: the document being counted (it names an episode it opens).
        """
        s = self.settings
        assert self.newest is not None  # observe/advance saw a time first
        moment = self.newest
        state.roll_to(self.now_bucket if self.now_bucket is not None else state.bucket)
        while state.neg_docs and state.neg_docs[0][0] <= state.bucket - s.window_steps:
            state.neg_docs.popleft()
        count, neg, share, volume, base, ratio = self._score(state)
        level = top_level(share, volume, base)
        if state.episode is not None:
            return self._end_if_fallen(state, level, moment)
        if volume is None or base is None or level < s.opens_at or neg < s.min_volume:
            return None
        by_share = share is not None and share >= volume
        if s.method == "cusum":
            baseline = (cusum_share(base) or 0.0) if by_share else cusum_rate(base, ratio)
        else:
            baseline = base.share_median if by_share else base.volume_median
        started = moment.astimezone(UTC)
        docs = [doc for _, doc in state.neg_docs][-s.max_docs :]
        state.episode = Alert(
            id=alert_id(self.monitor, key, started, doc_id),
            monitor=self.monitor,
            key=key,
            kind="negative_share" if by_share else "negative_volume",
            started_at=started,
            level=float(level),
            baseline=baseline,
            observed=neg / count if by_share else float(neg),
            docs=docs,
        )
        return dataclasses.replace(state.episode, docs=list(docs))  # a snapshot: the caller may keep it
