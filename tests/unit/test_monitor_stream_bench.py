"""benchmarks/monitor_stream.py: the seeded stream (time order, surges where and as big as declared),
the scoring of alerts against the surges, and a short replay through the monitor's detector.

Built from made-up sentences, so nothing outside the repository is read; each stream spans a few
simulated days at a few documents a minute (well under a second to build).
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400


def _load_benchmark():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports financial_phrasebank from beside it
    spec = importlib.util.spec_from_file_location(
        "monitor_stream_bench", ROOT / "benchmarks" / "monitor_stream.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()

# Four kinds of sentence, a quarter of them negative; the words pick the keyword topic.
KINDS = [
    ("Operating profit fell to EUR {n} mn", "negative", ("acme",)),
    ("The company will cut {n} jobs", "negative", ("globex", "acme")),
    ("Net sales rose by {n} %", "positive", ("globex",)),
    ("The shares were traded at EUR {n}", "neutral", ("initech",)),
    ("It signed a contract worth EUR {n} mn", "positive", ("acme",)),
    ("The meeting is held in Helsinki on day {n}", "neutral", ()),
    ("Revenue was unchanged at EUR {n} mn", "neutral", ("initech",)),
    ("The order book grew to EUR {n} mn", "positive", ("globex",)),
]


@pytest.fixture(scope="module")
def sentences():
    out = []
    for n in range(25):
        for text, label, orgs in KINDS:
            text = text.format(n=n)
            out.append(bench.Sentence(text, label, bench.keyword_topic(text), orgs))
    return out


SPEC = bench.StreamSpec(
    days=4, rates=(2.0, 4.0), multiples=(2.0, 3.0, 5.0), durations_s=(600, 1800), repeats=1, quiet_days=2
)


def test_keyword_topics() -> None:
    assert bench.keyword_topic("Finnish Componenta cuts 40 jobs as profit falls") == "jobs"
    assert bench.keyword_topic("Operating profit rose to EUR 3 mn") == "results"
    assert bench.keyword_topic("Aspo signed an agreement") == "deals"
    assert bench.keyword_topic("The chairman spoke in Helsinki") == "other"


def test_the_same_seed_gives_the_same_stream_and_another_seed_another(sentences) -> None:
    a, b = bench.build_stream(sentences, SPEC), bench.build_stream(sentences, SPEC)
    assert a.docs == b.docs and a.surges == b.surges
    c = bench.build_stream(sentences, replace(SPEC, seed=1))
    assert [d.time for d in c.docs[:50]] != [d.time for d in a.docs[:50]]
    assert [(s.key, s.start) for s in c.surges] != [(s.key, s.start) for s in a.surges]


def test_documents_come_in_time_order_within_the_span_with_ids_in_that_order(sentences) -> None:
    stream = bench.build_stream(sentences, SPEC)
    times = [d.time for d in stream.docs]
    assert times == sorted(times)
    assert stream.start <= times[0] and times[-1] < stream.end
    ids = [d.id for d in stream.docs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert bench.datetime.fromtimestamp(stream.start, bench.UTC).weekday() == 0  # a Monday
    # The companies' rates: about 2 and 4 documents a minute over the 4 days (5,760 minutes).
    assert stream.companies == {"aurora paper": 2.0, "borealis steel": 4.0}
    per_company = Counter(d.companies[0] for d in stream.docs if d.surge is None)
    assert per_company["aurora paper"] == pytest.approx(2 * 5760, rel=0.05)
    assert per_company["borealis steel"] == pytest.approx(4 * 5760, rel=0.05)


def test_surges_are_injected_where_and_as_big_as_declared(sentences) -> None:
    stream = bench.build_stream(sentences, SPEC)
    assert len(stream.surges) == 6  # 3 multiples x 2 durations x 1 repeat
    assert Counter((s.multiple, s.duration_s) for s in stream.surges) == Counter(
        (m, d) for m in SPEC.multiples for d in SPEC.durations_s
    )
    injected = Counter(d.surge for d in stream.docs if d.surge is not None)
    for s in stream.surges:
        docs = [d for d in stream.docs if d.surge == s.id]
        assert s.key in stream.eligible
        assert s.baseline_rate == pytest.approx(stream.negative_rates[s.key])
        assert (
            injected[s.id] == s.injected == round((s.multiple - 1) * s.baseline_rate * s.duration_s / 60) > 0
        )
        assert all(s.start <= d.time < s.end for d in docs)
        assert all(s.key in d.keys and sentences[d.sentence].negative for d in docs)
        assert set(s.touched) == {k for d in docs for k in d.keys}
    # One at a time, at least an hour apart, after the quiet days and before the tail.
    ordered = sorted(stream.surges, key=lambda s: s.start)
    assert all(b.start - a.end >= 3600 for a, b in itertools.pairwise(ordered))
    assert ordered[0].start >= stream.start + 2 * DAY and ordered[-1].end <= stream.end - SPEC.tail_s
    # The declared baseline negative rate of each surged key is the rate the stream has.
    minutes = SPEC.days * DAY / 60
    for key in {s.key for s in stream.surges}:
        seen = sum(key in d.keys and sentences[d.sentence].negative for d in stream.docs if d.surge is None)
        assert seen / minutes == pytest.approx(stream.negative_rates[key], rel=0.1)


def test_only_keys_with_enough_negative_news_get_surges(sentences) -> None:
    stream = bench.build_stream(sentences, replace(SPEC, min_surge_rate=0.6))
    assert stream.eligible == sorted(
        k for k, r in stream.negative_rates.items() if r >= 0.6 and k != "topic:other"
    )
    assert "company:aurora paper" not in stream.eligible  # 2 a minute, a quarter negative: 0.5
    assert {s.key for s in stream.surges} <= set(stream.eligible)


def test_a_daily_cycle_moves_the_rate_and_the_surges_follow_it(sentences) -> None:
    spec = replace(SPEC, daily_cycle=0.8, multiples=(3.0,), durations_s=(1800,), repeats=4)
    stream = bench.build_stream(sentences, spec)
    hour = Counter(int((d.time - stream.start) % DAY // 3600) for d in stream.docs if d.surge is None)
    noon, midnight = hour[11] + hour[12], hour[23] + hour[0]
    assert noon > 4 * midnight  # 1.8 / 0.2 at the extremes
    for s in stream.surges:
        factor = bench._cycle_factor(spec, s.start, s.end, stream.start)
        assert s.baseline_rate == pytest.approx(stream.negative_rates[s.key] * factor)


def test_companies_from_an_ner_run_are_the_organisations_named(sentences) -> None:
    spec = replace(SPEC, companies_from_ner=True, rates=(3.0, 1.0))
    stream = bench.build_stream(sentences, spec)
    # acme and globex are named in 75 sentences each (initech in 50); acme sorts first.
    assert list(stream.companies) == ["acme", "globex"]
    for d in stream.docs[:2000]:
        assert d.companies == sentences[d.sentence].orgs and d.companies
    # initech is named only in neutral sentences: no surge could be drawn for it.
    with pytest.raises(ValueError, match="found 2 organisations with a negative sentence; 3 rates"):
        bench.build_stream(sentences, replace(spec, rates=(1.0, 1.0, 1.0)))


def test_a_stream_that_cannot_hold_its_surges_is_refused(sentences) -> None:
    with pytest.raises(ValueError, match="do not fit"):
        bench.build_stream(sentences, replace(SPEC, repeats=20))
    with pytest.raises(ValueError, match="quiet days"):
        bench.StreamSpec(days=2, quiet_days=2)


def _tiny_stream() -> object:
    """Two surges on company:a; documents at every minute on company:a and topic:results."""
    t0 = bench.START.timestamp()
    docs = [bench.StreamDoc(f"d{i:04d}", t0 + 60 * i, 0, ("topic:results", "company:a")) for i in range(2000)]
    surges = [
        bench.Surge(0, "company:a", t0 + 600 * 60, 1800, 3.0, 0.5, 30, ("company:a", "topic:results")),
        bench.Surge(1, "company:a", t0 + 1200 * 60, 600, 5.0, 0.5, 20, ("company:a", "topic:results")),
    ]
    return bench.Stream(docs, surges, t0, t0 + 2000 * 60, {"a": 1.0}, {"company:a": 0.5}, ["company:a"])


def test_alerts_are_scored_as_detections_side_alerts_or_false() -> None:
    stream = _tiny_stream()
    t0 = stream.start
    alerts = [
        ("company:a", t0 + 607 * 60),  # surge 0 detected after 7 minutes, its 8th document
        ("topic:results", t0 + 610 * 60),  # another key the surge's documents count for: a side alert
        ("company:a", t0 + 300 * 60),  # before any surge: false
        ("company:a", t0 + 1200 * 60 + 600 + 901),  # just after surge 1 ended plus a 15m window: false
    ]
    scored = bench.score(stream, alerts, window_s=900, warm_up_s=0)
    assert scored["surges"][0] == {
        "id": 0, "key": "company:a", "multiple": 3.0, "minutes": 30.0, "delay_minutes": 7.0, "delay_docs": 8,
    }  # fmt: skip
    assert "delay_minutes" not in scored["surges"][1]
    assert (scored["false_alerts"], scored["side_alerts"]) == (2, 1)
    summary = bench.summarise(scored)
    assert summary["by_multiple"]["3x"]["detected"] == 1 and summary["by_multiple"]["5x"]["detected"] == 0
    assert not summary["detection_target"]  # the 5x surge was missed
    days = 2000 / 1440
    assert summary["false_per_week"] == pytest.approx(7 * 2 / days, abs=0.01)
    assert not summary["false_alert_target"]


def _poisson_tail(c: int, mu: float) -> float:
    """P(X >= c) for X ~ Poisson(mu), summed by hand (no scipy)."""
    import math

    return 1.0 - sum(math.exp(-mu) * mu**k / math.factorial(k) for k in range(max(c, 0)))


def test_detectability_is_the_exact_poisson_test_at_the_weekly_budget_per_key_and_window() -> None:
    stream = _tiny_stream()
    t0 = stream.start
    # Surge 0 (3x, 30 min, rate 0.5): 8 of its documents in its first 15 minutes, 22 after;
    # surge 1 (5x, 10 min): all 20 inside the first 15 minutes.
    extra = [bench.StreamDoc(f"s0-{i}", t0 + 600 * 60 + 60 * i + 1, 0, ("company:a",), 0) for i in range(30)]
    extra = [d if i < 8 else replace(d, time=t0 + 600 * 60 + 900 + i) for i, d in enumerate(extra)]
    extra += [bench.StreamDoc(f"s1-{i}", t0 + 1200 * 60 + 30 * i, 0, ("company:a",), 1) for i in range(20)]
    stream = replace(stream, docs=sorted(stream.docs + extra, key=lambda d: d.time))
    detect = bench.detectability(stream)
    alpha = 1.0 / (2 * 7 * 24 * 4)  # 1 false alert a week over 2 keys x 672 windows of 15 minutes
    assert detect["alpha"] == pytest.approx(alpha) and detect["keys"] == 2
    for row, added in zip(detect["surges"], (8, 20), strict=True):
        mu0, c = 0.5 * 15, row["critical"]
        assert row["extra"] == added and row["baseline_docs"] == mu0
        assert _poisson_tail(c, mu0) <= alpha < _poisson_tail(c - 1, mu0)  # the critical value
        assert row["probability"] == pytest.approx(_poisson_tail(c - added, mu0), abs=1e-4)
    p0, p1 = (r["probability"] for r in detect["surges"])
    assert 0.05 < p0 < 0.5 < p1  # 8 extra documents on 7.5 are hard to see; 20 are not
    assert (detect["detectable"], detect["big_detectable"], detect["big"]) == (1, 1, 2)
    assert detect["expected"] == pytest.approx(p0 + p1, abs=0.01)
    # The detection target still counts every surge of 3x or more, detectable or not.
    summary = bench.summarise(bench.score(stream, [("company:a", t0 + 1203 * 60)], window_s=900, warm_up_s=0))
    assert (summary["big"], summary["big_within_target"], summary["detection_target"]) == (2, 1, False)


def test_the_grid_has_each_methods_settings_and_labels_them(sentences) -> None:
    args = bench.parse_args(
        ["--methods", "zscore", "cusum", "--thresholds", "4", "--h", "9", "11", "--share", "off", "on",
         "--windows", "15m", "--baselines", "1d", "3d",
         "--cusum-windows", "15m", "--cusum-baselines", "1d", "3d"]
    )  # fmt: skip
    grid = bench.make_grid(args)
    assert len(grid) == 2 + 2 * 2 * 2 and sum(s.method == "zscore" for s in grid) == 2
    labels = [s.label for s in grid]
    assert labels[0] == "z 4, window 15m, baseline 1d"
    assert "cusum 3x h 11+share, window 15m, baseline 3d" in labels and len(set(labels)) == len(labels)
    only = bench.make_grid(bench.parse_args(["--methods", "cusum"]))  # the monitor's default CUSUM
    from tunelab.apps.monitor import DetectorSettings

    d = DetectorSettings()
    assert [(s.method, s.threshold, s.shift, s.share, s.window_s, s.baseline_s) for s in only] == [
        ("cusum", d.h, d.shift, d.share, d.window_s, d.baseline_s)
    ]


def test_a_short_replay_through_the_cusum_finds_a_big_surge(sentences) -> None:
    spec = bench.StreamSpec(
        days=1.5, rates=(4.0,), multiples=(5.0,), durations_s=(1800,), repeats=1, quiet_days=1
    )
    stream = bench.build_stream(sentences, spec)
    settings = bench_settings(window_s=600, baseline_s=4 * 3600, method="cusum")
    alerts = bench.replay(stream, [sentences[d.sentence].negative for d in stream.docs], settings)
    scored = bench.score(
        stream, [(a.key, a.started_at.timestamp()) for a in alerts], window_s=600, warm_up_s=3600
    )
    (surge,) = scored["surges"]
    assert surge["delay_minutes"] <= 15
    assert bench.replay(stream, [False] * len(stream.docs), settings) == []


def test_a_short_replay_through_the_detector_finds_a_big_surge_with_gold_labels(sentences) -> None:
    spec = bench.StreamSpec(
        days=1.5, rates=(4.0,), multiples=(5.0,), durations_s=(1800,), repeats=1, quiet_days=1
    )
    stream = bench.build_stream(sentences, spec)
    settings = bench_settings(window_s=600, baseline_s=4 * 3600, method="zscore")
    alerts = bench.replay(stream, [sentences[d.sentence].negative for d in stream.docs], settings)
    scored = bench.score(
        stream, [(a.key, a.started_at.timestamp()) for a in alerts], window_s=600, warm_up_s=3600
    )
    (surge,) = scored["surges"]
    assert surge["delay_minutes"] <= 15
    # A detector that never alerts detects nothing and raises no false alert.
    quiet = bench.replay(stream, [False] * len(stream.docs), settings)
    assert quiet == []


def bench_settings(**kwargs):
    from tunelab.apps.monitor import DetectorSettings

    return DetectorSettings(**{"step_s": 60, "min_history": 0.25, **kwargs})


def test_the_cli_checks_its_flags() -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--labels", "run"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--http"])
    args = bench.parse_args(["--windows", "10m", "900", "--baselines", "1d"])
    assert args.windows == [600, 900] and args.baselines == [DAY] and args.labels == "gold"


def test_throughput_follows_the_stream_as_a_file_after_a_stored_first_day(sentences, tmp_path: Path) -> None:
    """Gold labels (no model): the documents after the first day go through the monitor's follower,
    store and windows, each stored once; the day before was stored first, so the windows are warm."""
    from types import SimpleNamespace

    from tunelab.apps.monitor import open_monitor_store

    spec = bench.StreamSpec(days=1.5, rates=(1.0, 2.0), repeats=0, quiet_days=1)
    stream = bench.build_stream(sentences, spec)
    args = SimpleNamespace(run=None, ner=None)
    out = bench.ingest_followed(stream, sentences, 300, args, tmp_path)
    first, last = bench.measured_span(stream, 300, DAY + 900)
    assert stream.docs[first].time >= stream.start + DAY + 900 > stream.docs[first - 1].time
    assert (out["docs"], out["stored"], out["skipped"]) == (300, 300, 0)
    assert out["keys"] == {"topics": len({d.topic for d in stream.docs[:last]}), "companies": 0}
    with open_monitor_store(str(tmp_path / "monitor.db")) as store:
        assert store.existing_ids(bench.MONITOR, [d.id for d in stream.docs[:last]]) == {
            d.id for d in stream.docs[:last]
        }
