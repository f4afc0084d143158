"""Choose the CUSUM detector's settings on dev streams: never on the benchmark's own stream (seed 0).

``monitor_stream.py`` scores a few detector settings on its seed-0 stream; picking the threshold
there would fit the figures to that stream's 27 surges and 2 weeks of noise. This script builds
the same kind of stream from other seeds and replays it once per (window, baseline, shift), with
an alert threshold too high to fire, reading the CUSUM levels the detector computes for each
document and key (``Detector.window``: the very numbers its alert decision uses). The episodes
are then re-run offline for every ``h`` (open at ``S >= h`` with ``min_volume`` negatives in the
window, end at ``S <= release``), with the volume CUSUM alone and with the share CUSUM too, and
scored as the benchmark scores them (``monitor_stream.score``). That gives the whole ``h`` grid
for the cost of one replay per setting.

The pick: the setting with the most surges of at least 3x found within 15 simulated minutes
(over all dev seeds together) among those with at most ``--dev-budget`` false alerts a week
(pooled; default 0.5, half the target: two dev streams watch under 4 weeks, so a count of 3 false
alerts is as likely to be 2 a week as 0.5), then the fewest false alerts, then the shorter median
delay. ``--rows FILE`` picks again from a saved ``--json`` without replaying.

    .venv/bin/python benchmarks/monitor_detector_dev.py --seeds 1 2 --json dev.json
    .venv/bin/python benchmarks/monitor_detector_dev.py --rows dev.json --dev-budget 1   # re-pick
    .venv/bin/python benchmarks/monitor_detector_dev.py --seeds 3 --days 7 --quiet-days 2 --repeats 1 \\
        --windows 15m --baselines 1d --shifts 3                           # a quick check
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import monitor_stream as bench  # benchmarks/
import numpy as np
from bench_common import read_json  # benchmarks/bench_common.py

from tunelab.atomic import atomic_write_json


def levels_of(stream: bench.Stream, negative: list[bool], settings: Any) -> dict[str, np.ndarray]:
    """Per (document, key) in stream order: key index, time, volume level, share level, negatives in
    the window, and whether the key got the document; the detector never alerts (its threshold is
    out of reach).

    Each time the present moves to a new step, the keys whose last level was above ``release`` are
    read too (not their own document: such a row may end an episode, never open one): the detector
    ends an episode then, on other keys' documents, and a script that read a key only at its own
    documents kept it open and missed its next alert."""
    from tunelab.apps.monitor import Detector

    detector = Detector(bench.MONITOR, settings)
    keys: dict[str, int] = {}
    above: set[str] = set()  # keys whose last level read was above release
    rows: list[tuple[int, float, float, float, int, int]] = []
    for doc, neg in zip(stream.docs, negative, strict=True):
        moment = datetime.fromtimestamp(doc.time, UTC)
        present = detector.now_bucket
        detector.observe(doc.keys, moment, neg, doc.id)
        own = dict.fromkeys(doc.keys)
        others = sorted(above.difference(own)) if detector.now_bucket != present else []
        for key in [*own, *others]:
            w = detector.window(key)
            if w.volume_level is None:
                above.discard(key)
                continue
            share = w.share_level if w.share_level is not None else 0.0
            level = max(w.volume_level, share) if settings.share else w.volume_level
            (above.add if level > settings.release else above.discard)(key)
            index = keys.setdefault(key, len(keys))
            rows.append((index, doc.time, w.volume_level, share, w.negative, int(key in own)))
    arr = np.array(rows, dtype=float).reshape(-1, 6)
    return {
        "names": np.array(list(keys)),
        "key": arr[:, 0].astype(int),
        "time": arr[:, 1],
        "volume": arr[:, 2],
        "share": arr[:, 3],
        "neg": arr[:, 4].astype(int),
        "own": arr[:, 5].astype(bool),
    }


def episodes(
    rec: dict[str, np.ndarray], h: float, *, share: bool, release: float, min_volume: int
) -> list[tuple[str, float]]:
    """(key, time) of each alert the detector's episode rule opens at threshold ``h``."""
    level = np.maximum(rec["volume"], rec["share"]) if share else rec["volume"]
    names, opened = rec["names"], []
    for k in range(len(names)):
        mine = rec["key"] == k
        lv, neg, t, own = level[mine], rec["neg"][mine], rec["time"][mine], rec["own"][mine]
        # Only crossings matter: walk the candidates (opening or ending) in order.
        inside = False
        for i in np.flatnonzero((lv >= h) | (lv <= release)):
            if inside:
                if lv[i] <= release:
                    inside = False
            elif lv[i] >= h and neg[i] >= min_volume and own[i]:
                inside = True
                opened.append((str(names[k]), float(t[i])))
    return opened


def pick(rows: list[dict[str, Any]], budget: float) -> dict[str, Any] | None:
    """Most >= 3x surges within 15 minutes with at most ``budget`` false alerts a week; then the
    fewest false alerts; then the shorter median delay."""
    ok = [r for r in rows if r["false_per_week"] <= budget]
    return max(
        ok, key=lambda r: (r["big_within"], -r["false"], -(r["big_median_minutes"] or 99)), default=None
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(bench.DATA))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="dev stream seeds (not 0)")
    p.add_argument("--days", type=float, default=14.0)
    p.add_argument("--quiet-days", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--windows", type=bench.duration, nargs="+", default=["10m", "15m", "30m"])
    p.add_argument("--baselines", type=bench.duration, nargs="+", default=["1d", "3d"])
    p.add_argument("--shifts", type=float, nargs="+", default=[2.0, 3.0])
    p.add_argument("--h", type=float, nargs="+", default=[6, 7, 8, 8.5, 9, 9.5, 10, 10.5, 11, 12, 13, 14])
    p.add_argument("--release", type=float, default=0.0)
    p.add_argument("--min-volume", type=int, default=5)
    p.add_argument("--min-history", type=float, default=0.25)
    p.add_argument("--dev-budget", type=float, default=0.5, help="false alerts a week allowed on dev")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--rows", metavar="FILE", help="pick from this saved --json, without replaying")
    args = p.parse_args(argv)
    if args.rows:
        saved = read_json(Path(args.rows), remedy="give a file this script's --json wrote")
        if not isinstance(saved, dict) or not {"seeds", "rows"} <= set(saved):
            # monitor_stream.py's --json (or a list) failed with a KeyError or TypeError traceback
            p.error(f"--rows {args.rows}: not a file this script's --json wrote (it has seeds and rows)")
        print(f"pick (dev seeds {saved['seeds']}, <= {args.dev_budget:g} false a week): "
              f"{pick(saved['rows'], args.dev_budget)}")  # fmt: skip
        return
    if 0 in args.seeds:
        p.error("seed 0 is the benchmark's stream: choose settings on other seeds")
    from tunelab.apps.monitor import DetectorSettings

    windows, baselines = args.windows, args.baselines  # seconds (bench.duration)
    try:  # too few --days for the quiet days and the tail: monitor_stream's one line, before any work
        specs = [
            bench.StreamSpec(days=args.days, quiet_days=args.quiet_days, repeats=args.repeats, seed=seed)
            for seed in args.seeds
        ]
    except ValueError as exc:
        sys.exit(f"stream: {exc}")
    sentences = bench.load_sentences(Path(args.data), "50agree", None)
    streams = []
    for spec in specs:
        try:
            stream = bench.build_stream(sentences, spec)
        except ValueError as exc:  # e.g. too many surges for the days
            sys.exit(f"stream: {exc}")
        seed = spec.seed
        negative = [sentences[d.sentence].negative for d in stream.docs]
        streams.append((stream, negative, bench.key_times(stream)))
        print(f"seed {seed}: {len(stream.docs):,} documents, {len(stream.surges)} surges", flush=True)
    rows = []
    for window, baseline, shift in itertools.product(windows, baselines, args.shifts):
        settings = DetectorSettings(
            method="cusum", window_s=window, baseline_s=baseline, shift=shift, share=True,
            h=1e9, release=args.release, min_volume=args.min_volume, min_history=args.min_history,
        )  # fmt: skip
        started = time.perf_counter()
        recs = [levels_of(stream, negative, settings) for stream, negative, _ in streams]
        print(f"  window {bench._dur(window)}, baseline {bench._dur(baseline)}, shift {shift:g}: "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
        for h, share in itertools.product(args.h, (False, True)):
            surges, false, days = [], 0, 0.0
            for (stream, _, times), rec in zip(streams, recs, strict=True):
                alerts = episodes(rec, h, share=share, release=args.release, min_volume=args.min_volume)
                scored = bench.score(
                    stream, alerts, window_s=window, warm_up_s=args.min_history * baseline, times=times
                )
                surges += scored["surges"]
                false += scored["false_alerts"]
                days += scored["days_watched"]
            s = bench.summarise(
                {"surges": surges, "false_alerts": false, "side_alerts": 0, "days_watched": days}
            )
            found = [x["delay_minutes"] for x in surges if "delay_minutes" in x and x["multiple"] >= 3]
            rows.append({
                "window": bench._dur(window), "baseline": bench._dur(baseline), "shift": shift, "h": h,
                "share": share, "big_within": s["big_within_target"], "big": s["big"],
                "detected": s["all"]["detected"], "surges": len(surges), "false": false,
                "false_per_week": s["false_per_week"],
                "big_median_minutes": round(statistics.median(found), 1) if found else None,
            })  # fmt: skip
    print(f"\n{'window':>6} {'base':>4} {'shift':>5} {'h':>5} {'share':>5} {'>=3x<=15m':>10} {'all':>7} "
          f"{'false':>5} {'/week':>6} {'med >=3x':>8}")  # fmt: skip
    for r in rows:
        share = "on" if r["share"] else "off"
        print(f"{r['window']:>6} {r['baseline']:>4} {r['shift']:>5g} {r['h']:>5g} {share:>5} "
              f"{r['big_within']:>4}/{r['big']:<5} {r['detected']:>3}/{r['surges']:<3} {r['false']:>5} "
              f"{r['false_per_week']:>6.2f} {r['big_median_minutes'] or '-':>8}")  # fmt: skip
    chosen = pick(rows, args.dev_budget)
    print(
        f"\npick (most >=3x in 15 min, <= {args.dev_budget:g} false a week, dev seeds {args.seeds}): {chosen}"
    )
    if args.json:
        out = {"seeds": args.seeds, "args": {k: v for k, v in vars(args).items() if k != "json"}}
        atomic_write_json(args.json, {**out, "rows": rows, "pick": chosen})  # re-read by --rows: whole
        print(f"results: {args.json}")


if __name__ == "__main__":
    sys.exit(main())
