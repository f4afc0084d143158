"""Monitor benchmark: Financial PhraseBank replayed as a news stream with injected surges of negative news.

**The stream** (seeded, the same for every detector setting): simulated weeks from a Monday
00:00 UTC. Each company has its own baseline rate (documents a minute, a Poisson process, flat
unless ``--daily-cycle`` makes it swing over the day); its documents are PhraseBank sentences
drawn with replacement. Companies:

- without ``--ner``: synthetic, fictional names (COMPANIES), given to each document as metadata:
  every sentence may be drawn for any company, and the company is not written into the text.
  The detection replay feeds those names to the detector as the document's company; the end-to-end
  throughput (below) then has topic windows only, because the monitor takes companies from an NER
  run alone;
- with ``--ner RUN``: the organisations that NER run finds in the sentences (normalised as the
  monitor does). The companies named in the most sentences get the rates, in order; a company's
  documents are the sentences naming it, and a document counts for every company it names.

Topics come from keywords (TOPIC_WORDS, first match wins, else ``other``) and are sent as the
document's ``topic`` field. A document's gold sentiment is PhraseBank's label (50agree: 12.5%
negative). **Surges**: after ``--quiet-days`` (so every setting's baseline is full), one surge at a
time on a topic or company whose baseline negative rate is at least ``--min-surge-rate`` a minute
(a 3x surge of a rarer key cannot be told from noise in 15 minutes, whatever the detector); each
adds ``(multiple - 1) x baseline negative rate x duration`` documents, drawn the way that key's
negative documents are drawn anyway, spread uniformly over the surge, so the key's negative rate
is ``multiple`` times its baseline for that long. Every multiple x duration, ``--repeats`` times.

**Detection** (per detector setting of the grid, with the monitor's own ``Detector``): a surge is
detected by the first alert on its key opened between its start and its end plus one window; the
delay is counted in simulated minutes and in the key's documents since the surge started. An alert
on another key that got some of a surge's documents, in the same span, is a side alert (neither
detected nor false); every other alert is false. ``--labels gold`` scores PhraseBank's own labels,
so detection is measured apart from classification; ``--labels run`` the ``--run``'s predictions.
The grid has each ``--methods``' settings: the robust z-score (``--thresholds`` x ``--windows``
x ``--baselines``) and the CUSUM (``--h`` x ``--shifts`` x ``--share`` x ``--cusum-windows`` x
``--cusum-baselines``; by default the monitor's default CUSUM alone). Choose settings on another
``--seed`` (``monitor_detector_dev.py`` does), not on the stream reported.

**Detectable in principle** (``detectability``): for each surge, the probability that an oracle
flags it within 15 minutes: an exact one-sided Poisson test that knows the key's baseline
negative rate and the surge's start, counts the key's negatives over the surge's first 15
minutes (baseline ``N0 ~ Poisson(rate x 15 min)`` plus the surge's own documents there) and
rejects at the critical value of level ``alpha = 1 / (keys x 672)``: one false alert a week spread
over every key and every 15-minute window of a week. A surge is detectable in principle when that
probability is at least one half. The count over a known span is the most powerful test of a
constant surge (Neyman-Pearson), so no detector, which must also find the start, should beat it
by much; it says which misses are the detector's and which the stream's. The detection target
still counts every surge of 3x or more.

**Throughput** end to end: ``--throughput-docs`` documents of the stream (those after its first
simulated day, which is stored beforehand, gold-labelled, so that the windows have their baseline
as in a monitor that has been running) written to a JSONL file and followed by a monitor (classify
with ``--run``, a run folder or its ONNX int8 export, and ``--ner``; SQLite store; windows),
documents/s from the first read to the last commit, models loaded beforehand. Without ``--run``:
store and windows only, gold labels (no classification).
``--http`` also sends them to ``tunelab serve`` in batches (``POST /v1/apps/monitor/{name}/documents``).

    .venv/bin/python benchmarks/monitor_stream.py                      # detection grid, gold labels
    .venv/bin/python benchmarks/monitor_stream.py --methods cusum --h 9 10 11 --seed 1 --throughput-docs 0
    .venv/bin/python benchmarks/monitor_stream.py --days 4 --quiet-days 2 --repeats 1 --thresholds 4 \\
        --windows 15m --baselines 1d --throughput-docs 1000                 # a quick check
    .venv/bin/python benchmarks/monitor_stream.py --run RUN_OR_ONNX [--ner NER_RUN] --http --json monitor.json
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import serving  # benchmarks/bench_common.py
from financial_phrasebank import DATA, LABELS, SUBSETS, read_phrasebank  # benchmarks/

from tunelab.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
DAY = 86_400
# Fictional names (any likeness is chance): the synthetic companies when there is no NER run.
COMPANIES = ("Aurora Paper", "Borealis Steel", "Kestrel Telecom", "Lumo Retail", "Nordvik Shipping",
             "Pohjola Foods", "Saimaa Energy", "Tundra Software")  # fmt: skip
# Keyword topics, the first that matches wins (jobs before results: "cuts 40 jobs as profit falls").
TOPIC_WORDS = {
    "jobs": r"staff|employees|jobs?|layoffs?|personnel|redundanc\w*|workforce|negotiations|lay|cuts?|strike",
    "results": r"profit|loss|losses|sales|revenues?|earnings|net|operating|quarter|eps|margin|turnover"
    r"|results?|ebitd?a?",
    "deals": r"acquire[sd]?|acquisition|contracts?|agreement|orders?|deal|merger|stake|buys?|sells?|sold"
    r"|divest\w*|signed",
    "markets": r"shares?|stock|prices?|index|trading|market|investors|dividend|rating",
}
_TOPIC_RES = {name: re.compile(rf"\b(?:{words})\b", re.IGNORECASE) for name, words in TOPIC_WORDS.items()}
OTHER = "other"
MONITOR = "bench"
TARGETS = {"multiple": 3.0, "delay_minutes": 15.0, "false_per_week": 1.0, "docs_per_s": 300.0}


def keyword_topic(text: str) -> str:
    """The first topic of TOPIC_WORDS whose keywords occur in ``text``, else ``other``."""
    return next((name for name, pattern in _TOPIC_RES.items() if pattern.search(text)), OTHER)


@dataclass(frozen=True)
class Sentence:
    """A PhraseBank sentence: its gold label, keyword topic and the companies an NER run found."""

    text: str
    label: str
    topic: str
    orgs: tuple[str, ...] = ()

    @property
    def negative(self) -> bool:
        return self.label == "negative"


@dataclass(frozen=True)
class StreamSpec:
    """What the stream is made of; the same spec and seed give the same stream."""

    days: float = 14.0
    rates: tuple[float, ...] = (2.0, 3.0, 4.0, 6.0)  # documents a minute, one company each
    multiples: tuple[float, ...] = (2.0, 3.0, 5.0)
    durations_s: tuple[int, ...] = (600, 1800, 3600)
    repeats: int = 3
    quiet_days: float = 3.0  # no surge before this: every baseline of the grid is full by then
    tail_s: int = 6 * 3600  # no surge ends later than this before the end
    min_surge_rate: float = 0.2  # negative documents a minute a key needs to get surges
    daily_cycle: float = 0.0  # rate x (1 + a sin(...)): peak at 12:00, trough at 00:00
    seed: int = 0
    companies_from_ner: bool = False  # companies: the sentences' own ORGs, else synthetic metadata

    def __post_init__(self) -> None:
        problems = []
        if not self.rates or min(self.rates) <= 0:
            problems.append("rates: give one positive rate (documents a minute) per company")
        if not self.companies_from_ner and len(self.rates) > len(COMPANIES):
            problems.append(f"rates: at most {len(COMPANIES)} synthetic companies")
        if not 0 <= self.daily_cycle < 1:
            problems.append("daily cycle: give an amplitude in [0, 1)")
        if min(self.multiples, default=2) <= 1 or min(self.durations_s, default=1) <= 0:
            problems.append("surges: multiples above 1 and positive durations")
        if self.repeats < 0 or self.quiet_days < 0 or self.days * DAY <= self.quiet_days * DAY + self.tail_s:
            problems.append("days: the stream must outlast the quiet days and the tail")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True, slots=True)
class StreamDoc:
    """One document of the stream; ``surge`` is the injected surge it belongs to (None: baseline)."""

    id: str
    time: float  # epoch seconds (UTC), millisecond precision
    sentence: int  # index into the sentences
    keys: tuple[str, ...]  # "topic:<t>", then "company:<c>" for each company it counts for
    surge: int | None = None

    @property
    def topic(self) -> str:
        return self.keys[0].split(":", 1)[1]

    @property
    def companies(self) -> tuple[str, ...]:
        return tuple(k.split(":", 1)[1] for k in self.keys[1:])


@dataclass(frozen=True)
class Surge:
    """An injected surge: ``injected`` extra negative documents on ``key`` in [start, start + duration)."""

    id: int
    key: str
    start: float  # epoch seconds
    duration_s: int
    multiple: float
    baseline_rate: float  # the key's baseline negative documents a minute over the surge
    injected: int
    touched: tuple[str, ...] = ()  # every key the injected documents count for (side alerts)

    @property
    def end(self) -> float:
        return self.start + self.duration_s


@dataclass
class Stream:
    docs: list[StreamDoc]
    surges: list[Surge]
    start: float
    end: float
    companies: dict[str, float]  # company -> documents a minute
    negative_rates: dict[str, float]  # key -> mean baseline negative documents a minute
    eligible: list[str]  # keys that got surges
    spec: StreamSpec = field(default_factory=StreamSpec)


def _cycle_factor(spec: StreamSpec, start: float, end: float, t0: float) -> float:
    """Mean of ``1 + a sin(2 pi (t - t0) / day - pi / 2)`` over [start, end): the rate's multiplier there."""
    if not spec.daily_cycle:
        return 1.0
    w = 2 * math.pi / DAY
    a, b = w * (start - t0) - math.pi / 2, w * (end - t0) - math.pi / 2
    return 1.0 + spec.daily_cycle * (math.cos(a) - math.cos(b)) / (b - a)


def build_stream(sentences: Sequence[Sentence], spec: StreamSpec) -> Stream:
    """The seeded stream: baseline documents per company, then the surges, in time order.

    Raises:
        ValueError: no company can be formed (e.g. an NER run that found no organisation), or the
            surges do not fit in the days between the quiet days and the tail.
    """
    rng = np.random.default_rng(spec.seed)
    t0 = START.timestamp()
    span = spec.days * DAY
    names, pools = _companies(sentences, spec)
    rates = dict(zip(names, spec.rates, strict=False))

    def keys_of(i: int, c: int) -> tuple[str, ...]:
        orgs = sentences[i].orgs if spec.companies_from_ner else (names[c],)
        return (f"topic:{sentences[i].topic}", *(f"company:{o}" for o in orgs))

    # Each key's baseline negative rate, and how its negative documents are drawn: (company,
    # sentence) pairs weighted by the company's rate over its pool size.
    negative_rates: dict[str, float] = defaultdict(float)
    draws: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for c, pool in enumerate(pools):
        weight = spec.rates[c] / len(pool)
        for i in pool:
            if sentences[i].negative:
                for key in keys_of(i, c):
                    negative_rates[key] += weight
                    draws[key].append((c, i, weight))

    raw: list[tuple[float, int, tuple[str, ...], int | None]] = []  # (time, sentence, keys, surge)
    for c, pool in enumerate(pools):
        peak = spec.rates[c] * (1 + spec.daily_cycle) / 60  # documents a second at the daily peak
        times = rng.uniform(0, span, rng.poisson(peak * span))
        if spec.daily_cycle:
            level = 1 + spec.daily_cycle * np.sin(2 * np.pi * times / DAY - np.pi / 2)
            times = times[rng.uniform(0, 1 + spec.daily_cycle, len(times)) < level]
        picks = rng.choice(np.asarray(pool), len(times))
        raw += [(t0 + float(t), int(i), keys_of(int(i), c), None) for t, i in zip(times, picks, strict=True)]

    eligible = sorted(
        k for k, r in negative_rates.items() if r >= spec.min_surge_rate and k != f"topic:{OTHER}"
    )
    surges: list[Surge] = []
    combos = [(m, d) for m in spec.multiples for d in spec.durations_s] * spec.repeats
    if combos and eligible:
        order = rng.permutation(len(combos))
        first, last = t0 + spec.quiet_days * DAY, t0 + span - spec.tail_s
        slot = (last - first) / len(combos)
        longest = max(spec.durations_s)
        if slot < longest + 3600:
            raise ValueError(
                f"{len(combos)} surges do not fit in {(last - first) / 3600:.0f} h with an hour between "
                "them: give more days, fewer repeats or shorter durations"
            )
        keys = [eligible[j] for j in rng.permutation(len(eligible))]
        for n, j in enumerate(order):
            multiple, duration = combos[j]
            key = keys[n % len(keys)]
            start = round(first + n * slot + float(rng.uniform(0, slot - duration - 3600)), 3)
            base = negative_rates[key] * _cycle_factor(spec, start, start + duration, t0)
            count = round((multiple - 1) * base * duration / 60)
            options = draws[key]
            weights = np.array([w for _, _, w in options])
            chosen = rng.choice(len(options), count, p=weights / weights.sum())
            times = np.sort(rng.uniform(start, start + duration, count))
            touched: set[str] = set()
            for t, k in zip(times, chosen, strict=True):
                c, i, _ = options[k]
                doc_keys = keys_of(i, c)
                touched.update(doc_keys)
                raw.append((float(t), i, doc_keys, n))
            surges.append(Surge(n, key, start, duration, multiple, base, count, tuple(sorted(touched))))

    raw.sort(key=lambda r: (r[0], r[1]))
    docs = [StreamDoc(f"d{n:07d}", round(t, 3), i, keys, surge) for n, (t, i, keys, surge) in enumerate(raw)]
    return Stream(docs, surges, t0, t0 + span, rates, dict(negative_rates), eligible, spec)


def _companies(sentences: Sequence[Sentence], spec: StreamSpec) -> tuple[list[str], list[list[int]]]:
    """Company names (as the monitor keys them: lower case) and the sentences each one's documents
    are drawn from."""
    every = list(range(len(sentences)))
    if not spec.companies_from_ner:
        return [c.lower() for c in COMPANIES[: len(spec.rates)]], [every] * len(spec.rates)
    named: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(sentences):
        for org in s.orgs:
            named[org].append(i)
    # The most-named companies that have a negative sentence (else a surge could not be drawn).
    ranked = sorted(
        (o for o, pool in named.items() if any(sentences[i].negative for i in pool)),
        key=lambda o: (-len(named[o]), o),
    )[: len(spec.rates)]
    if len(ranked) < len(spec.rates):
        raise ValueError(
            f"the NER run found {len(ranked)} organisations with a negative sentence; "
            f"{len(spec.rates)} rates were given (--rates)"
        )
    return ranked, [named[o] for o in ranked]


# -- detection -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One point of the detector grid (the other DetectorSettings fields are shared)."""

    threshold: float  # zscore: the z-score; cusum: h
    window_s: int
    baseline_s: int
    method: str = "zscore"
    shift: float = 3.0  # cusum only
    share: bool = False  # cusum only: the Bernoulli CUSUM on the share too

    @property
    def label(self) -> str:
        span = f"window {_dur(self.window_s)}, baseline {_dur(self.baseline_s)}"
        if self.method == "zscore":
            return f"z {self.threshold:g}, {span}"
        share = "+share" if self.share else ""
        return f"cusum {self.shift:g}x h {self.threshold:g}{share}, {span}"


def _dur(seconds: float) -> str:
    for unit, size in (("d", DAY), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def replay(stream: Stream, negative: Sequence[bool], settings: Any) -> list[Any]:
    """The alerts the monitor's detector opens on the stream (``negative[i]``: document i's label)."""
    from tunelab.apps.monitor import Detector

    detector = Detector(MONITOR, settings)
    opened = []
    for doc, neg in zip(stream.docs, negative, strict=True):
        moment = datetime.fromtimestamp(doc.time, UTC)
        opened += [a for a in detector.observe(doc.keys, moment, neg, doc.id) if a.ended_at is None]
    return opened


def key_times(stream: Stream) -> dict[str, list[float]]:
    """Each key's document times, in order (for delays counted in documents)."""
    out: dict[str, list[float]] = defaultdict(list)
    for doc in stream.docs:
        for key in doc.keys:
            out[key].append(doc.time)
    return out


def score(
    stream: Stream,
    alerts: Sequence[tuple[str, float]],
    *,
    window_s: int,
    warm_up_s: float,
    times: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """Surges detected, their delays, side and false alerts; ``alerts`` are (key, epoch seconds) pairs."""
    times = key_times(stream) if times is None else times
    by_key: dict[str, list[float]] = defaultdict(list)
    for key, t in alerts:
        by_key[key].append(t)
    for ts in by_key.values():
        ts.sort()
    surges = []
    for s in stream.surges:
        hits = [t for t in by_key.get(s.key, []) if s.start <= t <= s.end + window_s]
        row: dict[str, Any] = {"id": s.id, "key": s.key, "multiple": s.multiple, "minutes": s.duration_s / 60}
        if hits:
            kt = times.get(s.key, [])
            row["delay_minutes"] = round((hits[0] - s.start) / 60, 2)
            row["delay_docs"] = bisect.bisect_right(kt, hits[0]) - bisect.bisect_left(kt, s.start)
        surges.append(row)
    false = side = 0
    for key, t in alerts:
        related = [s for s in stream.surges if key in s.touched and s.start <= t <= s.end + window_s]
        if not related:
            false += 1
        elif all(s.key != key for s in related):
            side += 1
    days = max(stream.end - stream.start - warm_up_s, 1.0) / DAY
    return {"surges": surges, "false_alerts": false, "side_alerts": side, "days_watched": round(days, 2)}


def summarise(scored: dict[str, Any]) -> dict[str, Any]:
    """Per multiple and overall: detected, median and worst delay; false alerts a day and a week;
    whether the detection and false-alert targets hold."""
    surges = scored["surges"]
    out: dict[str, Any] = {"by_multiple": {}}
    for multiple in sorted({s["multiple"] for s in surges}):
        out["by_multiple"][f"{multiple:g}x"] = _delays([s for s in surges if s["multiple"] == multiple])
    out["all"] = _delays(surges)
    big = [s for s in surges if s["multiple"] >= TARGETS["multiple"]]
    out["big_within_target"] = sum(s.get("delay_minutes", math.inf) <= TARGETS["delay_minutes"] for s in big)
    out["big"] = len(big)
    per_day = scored["false_alerts"] / scored["days_watched"]
    out.update(
        false_alerts=scored["false_alerts"],
        false_per_day=round(per_day, 3),
        false_per_week=round(7 * per_day, 2),
        side_alerts=scored["side_alerts"],
        detection_target=bool(big) and out["big_within_target"] == len(big),
        false_alert_target=7 * per_day <= TARGETS["false_per_week"],
    )
    return out


def _delays(surges: list[dict[str, Any]]) -> dict[str, Any]:
    found = [s for s in surges if "delay_minutes" in s]
    out: dict[str, Any] = {"surges": len(surges), "detected": len(found)}
    if found:
        minutes = [s["delay_minutes"] for s in found]
        docs = [s["delay_docs"] for s in found]
        out.update(
            median_minutes=round(statistics.median(minutes), 1),
            worst_minutes=round(max(minutes), 1),
            median_docs=statistics.median(docs),
            worst_docs=max(docs),
        )
    return out


def detectability(
    stream: Stream,
    *,
    within_s: float = TARGETS["delay_minutes"] * 60,
    false_per_week: float = TARGETS["false_per_week"],
) -> dict[str, Any]:
    """How likely an oracle test would flag each surge within ``within_s``: a yardstick for detectors.

    The test knows what no detector knows: the key's baseline negative rate and when the surge
    starts. It counts the key's negative documents over the surge's first ``within_s`` and flags
    the surge when the count reaches the one-sided exact Poisson critical value ``c`` at level
    ``alpha``, the false-alarm rate per window that the budget allows: ``false_per_week`` spread
    over every key of the stream and every ``within_s`` window of a week. A surge's probability is
    ``P(N0 + extra >= c)`` with ``N0 ~ Poisson(rate x within_s)`` the baseline documents and
    ``extra`` the surge's own documents in that span (as injected). For a surge of constant rate
    over a known span the count is the most powerful test (Neyman-Pearson), so a detector that
    must also find the start and watch every minute does no better, give or take the per-window
    accounting of false alarms. "Detectable in principle": probability at least one half.
    """
    from scipy.stats import poisson

    keys = {k for d in stream.docs for k in d.keys}
    alpha = false_per_week / (len(keys) * 7 * DAY / within_s)
    ends = {s.id: s.start + within_s for s in stream.surges}
    extra = Counter(d.surge for d in stream.docs if d.surge is not None and d.time < ends[d.surge])
    surges = []
    for s in stream.surges:
        mu0 = s.baseline_rate * within_s / 60
        critical = int(poisson.isf(alpha, mu0)) + 1  # smallest c with P(N0 >= c) <= alpha
        p = float(poisson.sf(critical - extra[s.id] - 1, mu0))  # P(N0 >= c - extra)
        surges.append({"id": s.id, "baseline_docs": round(mu0, 3), "critical": critical,
                       "extra": extra[s.id], "probability": round(p, 4)})  # fmt: skip
    big = {s.id for s in stream.surges if s.multiple >= TARGETS["multiple"]}
    return {
        "within_minutes": within_s / 60,
        "keys": len(keys),
        "alpha": alpha,
        "surges": surges,
        "detectable": sum(r["probability"] >= 0.5 for r in surges),
        "big_detectable": sum(r["probability"] >= 0.5 for r in surges if r["id"] in big),
        "big": len(big),
        "expected": round(sum(r["probability"] for r in surges), 2),
        "big_expected": round(sum(r["probability"] for r in surges if r["id"] in big), 2),
    }


def detection_grid(stream: Stream, negative: Sequence[bool], grid: list[Setting], args: Any) -> list[dict]:
    from tunelab.apps.monitor import DetectorSettings

    times = key_times(stream)
    rows = []
    for setting in grid:
        opens = {"threshold": setting.threshold} if setting.method == "zscore" else {"h": setting.threshold}
        settings = DetectorSettings(
            method=setting.method,
            window_s=setting.window_s,
            step_s=args.step,
            baseline_s=setting.baseline_s,
            release=args.release if setting.method == "zscore" else args.cusum_release,
            min_volume=args.min_volume,
            min_history=args.min_history,
            shift=setting.shift,
            share=setting.share,
            **opens,
        )
        started = time.perf_counter()
        alerts = replay(stream, negative, settings)
        seconds = time.perf_counter() - started
        scored = score(
            stream,
            [(a.key, a.started_at.timestamp()) for a in alerts],
            window_s=setting.window_s,
            warm_up_s=args.min_history * setting.baseline_s,
            times=times,
        )
        row = {"setting": asdict(setting), "label": setting.label, **summarise(scored)}
        row.update(alerts=len(alerts), replay_docs_per_s=round(len(stream.docs) / seconds))
        rows.append({**row, "surges": scored["surges"]})
        print(f"  {setting.label}: {len(alerts)} alerts ({seconds:.0f} s)", flush=True)
    return rows


# -- throughput ------------------------------------------------------------------------------------


class GoldSentiment:
    """Stands in for a sentiment run: PhraseBank's own label of each text (no classification)."""

    task_name = "single_label"

    def __init__(self, label_of: dict[str, str]) -> None:
        from types import SimpleNamespace

        self.labels = SimpleNamespace(names=list(LABELS))
        self.label_of = label_of

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict[str, Any]]:
        return [{"label": self.label_of[t], "score": 1.0} for t in texts]


class KnownOrgs:
    """Stands in for an NER run: the organisations the ``--ner`` run found in each sentence beforehand."""

    def __init__(self, orgs_of: dict[str, tuple[str, ...]]) -> None:
        self.orgs_of = orgs_of

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict[str, Any]]:
        return [{"entities": [{"text": o, "label": "ORG"} for o in self.orgs_of[t]]} for t in texts]


def stand_in_classifier(sentences: Sequence[Sentence], companies: bool) -> Any:
    """Gold labels (and the NER run's companies, looked up): the monitor without any model."""
    from tunelab.apps.monitor import Classifier

    ner = KnownOrgs({s.text: s.orgs for s in sentences}) if companies else None
    return Classifier(GoldSentiment({s.text: s.label for s in sentences}), ner=ner, batch_size=64)


def doc_json(doc: StreamDoc, sentences: Sequence[Sentence]) -> dict[str, Any]:
    """A document as the monitor takes it: id, ISO time, text, topic, source."""
    moment = datetime.fromtimestamp(doc.time, UTC).isoformat(timespec="milliseconds")
    text = sentences[doc.sentence].text
    return {"id": doc.id, "time": moment, "text": text, "topic": doc.topic, "source": "phrasebank"}


def monitor_config(work: Path, run: str | None, sources: list[dict[str, str]], store: Path) -> dict[str, Any]:
    return {
        "name": MONITOR,
        "store": str(store),
        "sources": sources,
        "runs": {"sentiment": run or str(work / "gold")},  # gold: never loaded (a classifier is given)
        "batch_size": 64,
    }


def measured_span(stream: Stream, n: int, warm_s: int) -> tuple[int, int]:
    """Indexes of the ``n`` documents measured: the first after ``warm_s`` of stream, so the windows
    they are counted in have a full baseline (before it, the detector has nothing to compare with
    and costs next to nothing)."""
    first = bisect.bisect_left([d.time for d in stream.docs], stream.start + warm_s)
    return first, min(first + n, len(stream.docs))


def warm_store(store: Path, stream: Stream, sentences: Sequence[Sentence], upto: int, work: Path) -> None:
    """Store the documents before the measured ones, with gold labels, for the monitor to warm up from."""
    from tunelab.apps.monitor import Document, Monitor, MonitorConfig, parse_document

    config = MonitorConfig.from_dict(monitor_config(work, None, [], store))
    classifier = stand_in_classifier(sentences, stream.spec.companies_from_ner)
    with Monitor(config, classifier=classifier) as monitor:
        for i in range(0, upto, 5000):
            docs: list[Document] = [
                parse_document(doc_json(d, sentences)) for d in stream.docs[i : min(i + 5000, upto)]
            ]
            monitor.process(docs)


def ingest_followed(
    stream: Stream, sentences: Sequence[Sentence], n: int, args: Any, work: Path
) -> dict[str, Any]:
    """Documents/s of a monitor following a JSONL file: read, classify, store, windows, commit.

    The monitor starts on a store that already holds the day before (gold labels), as a monitor
    that has been running does; the models are loaded and used once before the clock starts.
    """
    from tunelab.apps.monitor import Monitor, MonitorConfig, load_classifier

    first, last = measured_span(stream, n, DAY + 900)
    feed = work / "news.jsonl"
    with feed.open("w", encoding="utf-8") as f:
        f.writelines(
            json.dumps(doc_json(d, sentences), ensure_ascii=False) + "\n" for d in stream.docs[first:last]
        )
    config = MonitorConfig.from_dict(
        monitor_config(work, args.run, [{"follow": str(feed)}], work / "monitor.db")
    )
    warm_store(work / "monitor.db", stream, sentences, first, work)
    if args.run:
        classifier = load_classifier(config, ner=args.ner)
    else:
        classifier = stand_in_classifier(sentences, bool(args.ner))
    texts = [sentences[d.sentence].text for d in stream.docs[:16]]
    classifier.sentiment.predict(texts)  # first-call costs (graph set-up) outside the timing
    if classifier.ner is not None:
        classifier.ner.predict(texts)
    with Monitor(config, classifier=classifier) as monitor:
        started = time.perf_counter()
        result = monitor.run(once=True)
        seconds = time.perf_counter() - started
        keys = monitor.detector.keys()
    return {
        "path": "followed file",
        "docs": last - first,
        "stored": result.stored,
        "skipped": result.skipped,
        "seconds": round(seconds, 2),
        "docs_per_s": round(result.stored / seconds, 1),
        "classification": Path(args.run).name if args.run else "gold labels (none)",
        "ner": (Path(args.ner).name if args.run else "looked up") if args.ner else None,
        "keys": {
            "topics": sum(k.startswith("topic:") for k in keys),
            "companies": sum(k.startswith("company:") for k in keys),
        },
    }


def ingest_http(
    stream: Stream, sentences: Sequence[Sentence], n: int, args: Any, work: Path
) -> dict[str, Any]:
    """Documents/s through ``POST /v1/apps/monitor/{name}/documents`` of ``tunelab serve``.

    The server is started as ``tunelab serve sentiment=RUN --monitor monitor.yaml --threads N``
    (``--serve-arg`` replaces the arguments after the run) and each request body is
    ``{"documents": [...]}``, answered with the ingest result (``stored``, ``duplicates``). N is the
    CPU count, the threads the followed-file path classifies with (torch's default): serve's own
    default of 1 leaves a monitor's classifier one core (218 against 367 documents/s on 2 cores).
    """
    import asyncio

    import yaml

    data_dir = work / "serve"
    data_dir.mkdir(exist_ok=True)
    config_path = work / "monitor.yaml"
    config = monitor_config(work, args.run, [], work / "http-monitor.db")
    if args.ner:
        config["runs"]["ner"] = args.ner
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    first, last = measured_span(stream, n, DAY + 900)
    warm_store(work / "http-monitor.db", stream, sentences, first, work)
    threads = str(os.cpu_count() or 1)
    extra = [a.replace("{config}", str(config_path)) for a in args.serve_arg] or [
        "--monitor",
        str(config_path),
        "--threads",
        threads,
    ]
    docs = [doc_json(d, sentences) for d in stream.docs[first:last]]
    batches = [docs[i : i + args.http_batch] for i in range(0, len(docs), args.http_batch)]
    with serving([f"sentiment={args.run}", *extra], data_dir) as (url, token):
        out = asyncio.run(_post_batches(url, token, batches, args.http_clients))
    return {
        "path": "HTTP",
        "docs": last - first,
        "stored": out["stored"],
        "duplicates": out["duplicates"],
        "errors": out["errors"],
        "seconds": round(out["seconds"], 2),
        "docs_per_s": round(out["stored"] / out["seconds"], 1),
        "batch": args.http_batch,
        "clients": args.http_clients,
        "classification": Path(args.run).name,
        "ner": Path(args.ner).name if args.ner else None,
    }


async def _post_batches(url: str, token: str, batches: list[list[dict]], clients: int) -> dict[str, Any]:
    import asyncio

    import httpx

    route = f"/v1/apps/monitor/{MONITOR}/documents"
    queue = list(reversed(batches))
    totals: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:

        async def one_client() -> None:
            while queue:
                batch = queue.pop()
                r = await client.post(route, json={"documents": batch})
                if r.status_code != 200:
                    errors[f"{r.status_code}: {r.text[:200]}"] += 1
                    continue
                body = r.json()
                totals["stored"] += int(body.get("stored", 0))
                totals["duplicates"] += int(body.get("duplicates", 0))

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        seconds = time.perf_counter() - started
    return {
        "stored": totals["stored"],
        "duplicates": totals["duplicates"],
        "errors": dict(errors),
        "seconds": seconds,
    }


# -- data and models -------------------------------------------------------------------------------


def load_sentences(data: Path, subset: str, ner: str | None) -> list[Sentence]:
    """The subset's unique sentences with keyword topics, and the companies ``ner`` finds in them."""
    rows, _ = read_phrasebank(data / SUBSETS[subset])
    orgs: list[tuple[str, ...]] = [()] * len(rows)
    if ner:
        import tunelab
        from tunelab.apps.monitor import normalise_company

        print(f"NER over {len(rows):,} sentences with {ner} ...", flush=True)
        results = tunelab.load(ner).predict([t for t, _ in rows], batch_size=64)
        orgs = [_orgs(r, normalise_company) for r in results]
    return [Sentence(t, label, keyword_topic(t), o) for (t, label), o in zip(rows, orgs, strict=True)]


def _orgs(result: dict[str, Any], normalise: Any) -> tuple[str, ...]:
    """The normalised ORG entities of one NER prediction, each once, in order (as the monitor keeps them)."""
    names = (normalise(e["text"]) for e in result.get("entities", []) if e.get("label") == "ORG")
    return tuple(dict.fromkeys(n for n in names if n))


def predicted_negative(sentences: Sequence[Sentence], run: str) -> tuple[list[bool], dict[str, Any]]:
    """The run's negative calls per sentence, and how they compare with the gold labels."""
    import tunelab

    predictor = tunelab.load(run)
    labels = [str(r["label"]) for r in predictor.predict([s.text for s in sentences], batch_size=64)]
    pred = [lab == "negative" for lab in labels]
    gold = [s.negative for s in sentences]
    tp = sum(p and g for p, g in zip(pred, gold, strict=True))
    quality = {
        "accuracy": round(
            100 * sum(lab == s.label for lab, s in zip(labels, sentences, strict=True)) / len(labels), 2
        ),
        "negative_precision": round(100 * tp / max(sum(pred), 1), 2),
        "negative_recall": round(100 * tp / max(sum(gold), 1), 2),
    }
    return pred, quality


# -- report ----------------------------------------------------------------------------------------


def print_stream(stream: Stream) -> None:
    spec = stream.spec
    by_key = Counter(k for d in stream.docs for k in d.keys)
    companies = "from the NER run" if spec.companies_from_ner else "synthetic (metadata)"
    print(
        f"\nStream: {len(stream.docs):,} documents over {spec.days:g} simulated days (seed {spec.seed}), "
        f"{len(stream.surges)} surges after day {spec.quiet_days:g}; companies {companies}, keyword topics"
    )
    minutes = spec.days * DAY / 60
    print(f"{'key':<34} {'docs/min':>8} {'neg/min':>8} {'surges':>6}")
    surges = Counter(s.key for s in stream.surges)
    for key in sorted(by_key, key=lambda k: (not k.startswith("company:"), k)):
        rate = stream.negative_rates.get(key, 0.0)
        print(f"{key:<34} {by_key[key] / minutes:>8.2f} {rate:>8.3f} {surges.get(key, 0):>6}")


def print_grid(rows: list[dict[str, Any]], labels: str) -> None:
    print(
        f"\nDetection per setting ({labels} labels); delays median/worst, in simulated minutes and in "
        "the key's documents"
    )
    multiples = list(rows[0]["by_multiple"]) if rows else []
    head = f"{'setting':<44}" + "".join(f" {m:>6}" for m in multiples)
    head += f" {'>=3x<=15m':>9} {'delay min':>11} {'delay docs':>10} {'false':>5} {'/day':>6} {'/week':>6}"
    print(head + f" {'side':>4}  targets")
    for r in rows:
        cells = "".join(f" {b['detected']:>2}/{b['surges']:<3}" for b in r["by_multiple"].values())
        cells += f" {r['big_within_target']:>4}/{r['big']:<4}"
        a = r["all"]
        delay = f"{a['median_minutes']:.1f}/{a['worst_minutes']:.1f}" if a["detected"] else "-"
        docs = f"{a['median_docs']:g}/{a['worst_docs']}" if a["detected"] else "-"
        marks = ("D" if r["detection_target"] else "-") + ("F" if r["false_alert_target"] else "-")
        false = f"{r['false_alerts']:>5} {r['false_per_day']:>6.2f} {r['false_per_week']:>6.2f}"
        print(f"{r['label']:<44}{cells} {delay:>11} {docs:>10} {false} {r['side_alerts']:>4}  {marks}")
    print("targets: D = every surge >= 3x detected within 15 simulated minutes, F = <= 1 false alert a week")


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The setting that finds the most big surges in time with at most one false alert a week (else
    the most in time), then the fewest false alerts."""
    if not rows:
        return None
    return max(
        rows,
        key=lambda r: (
            r["false_alert_target"],
            r["big_within_target"],
            -r["false_alerts"],
            r["all"]["detected"],
        ),
    )


def print_best(rows: list[dict[str, Any]], stream: Stream, detect: dict[str, Any]) -> None:
    """Each surge of the best setting of each method, so that a miss can be read against its key's
    baseline rate and against what the oracle test (``detectability``) could find."""
    declared = {s.id: s for s in stream.surges}
    oracle = {r["id"]: r for r in detect["surges"]}
    for method in dict.fromkeys(r["setting"]["method"] for r in rows):
        best = best_row([r for r in rows if r["setting"]["method"] == method])
        if best is None:
            continue
        print(
            f"\nSurges, {best['label']} (baseline negatives a minute, documents added; delay in minutes "
            f"and documents; P(oracle): the {detect['within_minutes']:g}-minute exact test's chance)"
        )
        for row in sorted(best["surges"], key=lambda r: (-r["multiple"], r["key"])):
            s = declared[row["id"]]
            found = (
                f"{row['delay_minutes']:.1f} min, {row['delay_docs']} docs"
                if "delay_minutes" in row
                else "missed"
            )
            print(
                f"  {s.multiple:g}x {s.duration_s // 60:>3} min {s.key:<30} {s.baseline_rate:.3f}/min "
                f"+{s.injected:<4} P(oracle) {oracle[s.id]['probability']:.2f}  {found}"
            )


def print_detectability(detect: dict[str, Any]) -> None:
    print(
        f"\nSurges detectable in principle: {detect['detectable']} of {len(detect['surges'])} "
        f"(>= {TARGETS['multiple']:g}x: {detect['big_detectable']} of {detect['big']}); expected "
        f"{detect['expected']:g} ({detect['big_expected']:g}). An exact one-sided Poisson test on the "
        f"key's negatives over each surge's first {detect['within_minutes']:g} minutes, knowing the "
        f"baseline rate and the start, at alpha {detect['alpha']:.2e} a window (<= "
        f"{TARGETS['false_per_week']:g} false alert a week over {detect['keys']} keys), flags it with "
        "probability >= 0.5. The targets still count every surge."
    )


def print_targets(rows: list[dict[str, Any]], throughput: list[dict[str, Any]]) -> dict[str, Any]:
    both = [r["label"] for r in rows if r["detection_target"] and r["false_alert_target"]]
    verdict: dict[str, Any] = {
        "detection": [r["label"] for r in rows if r["detection_target"]],
        "false_alerts": [r["label"] for r in rows if r["false_alert_target"]],
        "both": both,
        "throughput": {},
    }
    print("\nTargets")

    def holds(labels: list[str]) -> str:
        if not rows:
            return "not measured (--skip-detection)"
        return "holds for " + "; ".join(labels) if labels else "holds for no setting"

    print(
        f"- every surge >= {TARGETS['multiple']:g}x detected within {TARGETS['delay_minutes']:g} simulated "
        f"minutes: {holds(verdict['detection'])}"
    )
    print(
        f"- <= {TARGETS['false_per_week']:g} false alert per simulated week: {holds(verdict['false_alerts'])}"
    )
    if rows:
        print(f"- both at once: {'; '.join(both) if both else 'no setting'}")
    for t in throughput:
        if t["classification"].startswith("gold"):
            print(
                f"- >= {TARGETS['docs_per_s']:g} documents/s ({t['path']}): not measured (no --run: "
                f"{t['docs_per_s']:g} docs/s is store + windows only)"
            )
            verdict["throughput"][t["path"]] = None
        else:
            ok = t["docs_per_s"] >= TARGETS["docs_per_s"]
            print(
                f"- >= {TARGETS['docs_per_s']:g} documents/s ({t['path']}): {t['docs_per_s']:g}: "
                f"{'holds' if ok else 'does NOT hold'}"
            )
            verdict["throughput"][t["path"]] = ok
    if not throughput:
        print(f"- >= {TARGETS['docs_per_s']:g} documents/s: not measured (--throughput-docs 0)")
    return verdict


# -- main ------------------------------------------------------------------------------------------


def duration(text: str) -> int:
    """An argparse type: ``10m``, ``1h``, ``3d`` or seconds, in seconds (a bad one: argparse's line)."""
    from tunelab.apps.monitor.config import parse_duration
    from tunelab.errors import ConfigError

    try:
        return parse_duration(int(text) if text.isdigit() else text, "duration")
    except ConfigError as exc:  # argparse reports it as a bad value, in one line
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from tunelab.apps.monitor import DetectorSettings

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA), help="folder with the Sentences_*.txt files")
    p.add_argument("--subset", choices=list(SUBSETS), default="50agree")
    g = p.add_argument_group("stream")
    g.add_argument("--days", type=float, default=14.0, help="simulated days (default 14)")
    g.add_argument("--rates", type=float, nargs="+", default=[2.0, 3.0, 4.0, 6.0],
                   help="documents a minute, one company each (default 2 3 4 6)")  # fmt: skip
    g.add_argument("--multiples", type=float, nargs="+", default=[2.0, 3.0, 5.0])
    g.add_argument("--durations", type=duration, nargs="+", default=[600, 1800, 3600], help="10m 30m 1h")
    g.add_argument("--repeats", type=int, default=3, help="surges of each multiple x duration (default 3)")
    g.add_argument("--quiet-days", type=float, default=3.0, help="no surge before this day (default 3)")
    g.add_argument("--min-surge-rate", type=float, default=0.2, help="negatives a minute a surged key needs")
    g.add_argument("--daily-cycle", type=float, default=0.0, help="rate amplitude over the day, 0..1")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("detector grid (the other settings: the monitor's defaults)")
    g.add_argument("--methods", nargs="+", choices=["zscore", "cusum"], default=["zscore", "cusum"])
    g.add_argument("--thresholds", type=float, nargs="+", default=[3.5, 4.0, 5.0], help="zscore: z")
    cusum = DetectorSettings()  # the monitor's default CUSUM: the grid's by default
    g.add_argument("--h", type=float, nargs="+", default=[cusum.h], dest="cusum_h",
                   help=f"cusum: h, nats (default {cusum.h:g})")  # fmt: skip
    g.add_argument("--shifts", type=float, nargs="+", default=[cusum.shift],
                   help=f"cusum: rate multiple ({cusum.shift:g})")  # fmt: skip
    g.add_argument("--share", nargs="+", choices=["off", "on"], default=["off"],
                   help="cusum: the Bernoulli CUSUM on the share too (off)")  # fmt: skip
    g.add_argument("--windows", type=duration, nargs="+", default=[600, 900], help="zscore (10m 15m)")
    g.add_argument("--baselines", type=duration, nargs="+", default=[DAY, 3 * DAY], help="zscore (1d 3d)")
    g.add_argument("--cusum-windows", type=duration, nargs="+", default=[cusum.window_s],
                   help=f"cusum ({_dur(cusum.window_s or 0)})")  # fmt: skip
    g.add_argument("--cusum-baselines", type=duration, nargs="+", default=[cusum.baseline_s],
                   help=f"cusum ({_dur(cusum.baseline_s or 0)})")  # fmt: skip
    g.add_argument("--release", type=float, default=2.0, help="zscore: release (2)")
    g.add_argument("--cusum-release", type=float, default=0.0, help="cusum: release (0: S back to 0)")
    g.add_argument("--min-volume", type=int, default=5)
    g.add_argument("--min-history", type=float, default=0.25)
    g.add_argument("--step", type=duration, default=60)
    g = p.add_argument_group("classification and throughput")
    g.add_argument("--labels", choices=["gold", "run"], help="detection on gold labels or the run's "
                   "(default: run with --run, else gold)")  # fmt: skip
    g.add_argument("--run", help="sentiment run folder or its exported artifact (onnx-int8)")
    g.add_argument("--ner", metavar="RUN", help="NER run: companies are the organisations it finds")
    g.add_argument("--throughput-docs", type=int, default=5000, help="documents ingested (0: skip)")
    g.add_argument("--http", action="store_true", help="also measure POST /v1/apps/monitor/{name}/documents")
    g.add_argument("--http-batch", type=int, default=64, help="documents a request (default 64)")
    g.add_argument("--http-clients", type=int, default=2, help="concurrent clients (default 2)")
    g.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                   help="one tunelab serve argument naming the monitor ({config}: its file), given as "
                   "--serve-arg=VALUE (a VALUE starting with - is refused otherwise) and repeated, "
                   "e.g. --serve-arg=--monitor --serve-arg={config}; default --monitor {config} "
                   "--threads <CPU count>")  # fmt: skip
    p.add_argument("--skip-detection", action="store_true", help="throughput only")
    p.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    args = p.parse_args(argv)
    args.labels = args.labels or ("run" if args.run else "gold")
    if args.labels == "run" and not args.run:
        p.error("--labels run needs --run")
    if args.http and not args.run:
        p.error("--http needs --run: the server classifies with it")
    return args


def make_grid(args: argparse.Namespace) -> list[Setting]:
    """The settings of each method: z x window x baseline; h x shift x share x window x baseline
    (the CUSUM with its own windows and baselines)."""
    grid = []
    if "zscore" in args.methods:
        spans = list(itertools.product(args.windows, args.baselines))
        grid += [Setting(t, w, b) for t in args.thresholds for w, b in spans]
    if "cusum" in args.methods:
        spans = list(itertools.product(args.cusum_windows, args.cusum_baselines))
        grid += [
            Setting(h, w, b, "cusum", shift, share == "on")
            for h, shift, share in itertools.product(args.cusum_h, args.shifts, args.share)
            for w, b in spans
        ]
    return grid


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = Path(args.data)
    if not (data / SUBSETS[args.subset]).is_file():
        sys.exit(f"{SUBSETS[args.subset]} not found in {data}: give --data FOLDER")
    for flag, path in (("--run", args.run), ("--ner", args.ner)):
        if path and not Path(path).exists():
            sys.exit(f"{flag} {path}: no such run folder or artifact")
    sentences = load_sentences(data, args.subset, args.ner)
    try:
        spec = StreamSpec(
            days=args.days, rates=tuple(args.rates), multiples=tuple(args.multiples),
            durations_s=tuple(args.durations), repeats=args.repeats, quiet_days=args.quiet_days,
            min_surge_rate=args.min_surge_rate, daily_cycle=args.daily_cycle, seed=args.seed,
            companies_from_ner=bool(args.ner),
        )  # fmt: skip
        stream = build_stream(sentences, spec)
    except ValueError as exc:
        sys.exit(f"stream: {exc}")
    print_stream(stream)
    results: dict[str, Any] = {"spec": asdict(spec), "labels": args.labels, "documents": len(stream.docs)}
    results.update(surges=[asdict(s) for s in stream.surges], eligible=stream.eligible)
    rows: list[dict[str, Any]] = []
    if not args.skip_detection:
        if args.labels == "run":
            negative_of, quality = predicted_negative(sentences, args.run)
            results["classifier_on_sentences"] = quality
            print(f"\n{args.run} on the {len(sentences):,} sentences (trained on some of them): {quality}")
        else:
            negative_of = [s.negative for s in sentences]
        negative = [negative_of[d.sentence] for d in stream.docs]
        grid = make_grid(args)
        detect = detectability(stream)
        results["detectability"] = detect
        print(f"\nReplaying {len(stream.docs):,} documents through the detector, {len(grid)} settings ...")
        rows = detection_grid(stream, negative, grid, args)
        print_grid(rows, args.labels)
        print_best(rows, stream, detect)
        print_detectability(detect)
    throughput = []
    if args.throughput_docs > 0:
        n = min(args.throughput_docs, len(stream.docs))
        with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp:
            throughput.append(ingest_followed(stream, sentences, n, args, Path(tmp)))
            if args.http:
                throughput.append(ingest_http(stream, sentences, n, args, Path(tmp)))
        print("\nIngestion end to end (classify + store + windows)")
        for t in throughput:
            models = f"sentiment: {t['classification']}, NER: {t['ner'] or 'none'}"
            print(
                f"- {t['path']}: {t['stored']:,} of {t['docs']:,} documents in {t['seconds']:.1f} s = "
                f"{t['docs_per_s']:,.1f} docs/s ({models})"
            )
    results["grid"] = rows
    results["throughput"] = throughput
    results["targets"] = print_targets(rows, throughput)
    if args.json:
        atomic_write_json(args.json, results)  # makes its folder; a kill leaves no half file
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
