"""The parity check every export passes: same data, before (PyTorch eager) and after (the artifact).

Quantisation is known to wreck some models silently (a few outlier weights set the int8 scale and
everything else rounds to zero), so an export is only kept when its headline metric falls by at
most ``max_drop`` percentage points. The report also carries what a deployer asks next: how often
the two agree, the largest logit difference, size on disk, and latency at batch 1 and 32.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelab.data.encoding import Encoded
from tunelab.errors import TunelabError
from tunelab.inference.backends import Backend
from tunelab.tasks import Task

LATENCY_BATCHES = {1: 20, 32: 5}  # batch size -> timed passes (after one warm-up)
DROP_DECIMALS = 6  # the metric drop is compared with --max-drop at this many decimals (of points)


class ParityError(TunelabError):
    """The exported model lost more than the allowed accuracy; nothing was written."""


@dataclass
class Measured:
    """One side of the comparison."""

    metrics: dict[str, Any]
    logits: np.ndarray
    latency_ms: dict[str, float]
    size_mb: float


def measure(
    backend: Backend,
    enc: Encoded,
    *,
    task: Task,
    labels: Any,
    threshold: float | None,
    size_mb: float,
) -> Measured:
    """Score ``backend`` on the encoded, labelled parity data and time it at batch 1 and 32.

    ``labels`` is the run's label map; ``threshold`` the run's (used where the task has one).
    """
    logits = backend.logits(enc, batch_size=64)
    metrics, _ = task.score(logits, enc, labels, threshold=threshold)
    return Measured(metrics=metrics, logits=logits, latency_ms=latency_ms(backend, enc), size_mb=size_mb)


def latency_ms(backend: Backend, enc: Encoded) -> dict[str, float]:
    """Median milliseconds per call at batch 1 and batch 32 (rows cycle when the data is small)."""
    out = {}
    n = len(enc)
    for size, passes in LATENCY_BATCHES.items():
        times = []
        for k in range(passes + 1):
            rows = [(k * size + j) % n for j in range(size)]
            batch = Encoded(
                input_ids=[enc.input_ids[i] for i in rows],
                token_type_ids=[enc.token_type_ids[i] for i in rows] if enc.token_type_ids else None,
                labels=None,
                pad_id=enc.pad_id,
            )
            start = time.perf_counter()
            backend.logits(batch, batch_size=size)
            if k:  # the first pass warms caches and allocators
                times.append(time.perf_counter() - start)
        out[f"batch_{size}"] = round(1000 * statistics.median(times), 3)
    return out


def compare(
    before: Measured,
    after: Measured,
    *,
    metric: str,
    task: Task,
    threshold: float | None,
    max_drop: float,
    enc: Encoded | None = None,
) -> dict[str, Any]:
    """The parity report (``parity.json``); ``passed`` says whether the drop is within ``max_drop``.

    ``metric`` is ``task.parity_metric`` of the run's; ``agreement`` is the task's (same arg-max,
    same label set, same tag at every labelled token), over ``enc``, the data both were measured on:
    a share of its texts, as ``data.rows`` counts them (an NER text agrees when all its windows do).
    """
    b, a = 100 * float(before.metrics[metric]), 100 * float(after.metrics[metric])
    same = task.agreement(before.logits, after.logits, threshold=threshold, enc=enc)
    # Rounded to far below the reported precision before comparing: 59/100 -> 58/100 is 0.99999...
    # or 1.00000...01 points in floats, and an exact 1-point drop failed --max-drop 1 as "a drop of
    # 1.00 points, more than the allowed 1".
    drop = round(b - a, DROP_DECIMALS)
    return {
        "metric": metric,
        "before": _side(before, metric, b, task),
        "after": _side(after, metric, a, task),
        "drop_points": round(drop, 4),
        "max_drop": max_drop,
        "passed": bool(drop <= max_drop),  # NaN fails
        "agreement": round(same, 6),
        "max_logit_diff": float(np.abs(before.logits - after.logits).max()),
        "speedup": {k: round(before.latency_ms[k] / v, 2) for k, v in after.latency_ms.items()},
        "size_ratio": round(after.size_mb / before.size_mb, 3) if before.size_mb else None,
    }


def _side(m: Measured, metric: str, value: float, task: Task) -> dict[str, Any]:
    return {
        metric: round(value, 4),
        "metrics": task.headline(m.metrics),
        "latency_ms": m.latency_ms,
        "texts_per_s": {k: round(int(k.split("_")[1]) * 1000 / v, 1) for k, v in m.latency_ms.items()},
        "size_mb": round(m.size_mb, 2),
    }


def points_change(drop: float) -> str:
    """The metric's change as "+0.12 points": no drop was printed "-0.00" (a negated zero)."""
    return f"{round(-drop, 2) + 0.0:+.2f} points"


def speed_change(gain: float) -> str:
    """A latency ratio in words: below 1 the artifact is slower, which "0.88x faster" hid."""
    return f"{gain:.2f}x faster" if gain >= 1 or gain <= 0 else f"{1 / gain:.2f}x slower"


def render_markdown(report: dict[str, Any]) -> str:
    """``parity.md``: the report as a short table a person can read."""
    m, b, a = report["metric"], report["before"], report["after"]
    verdict = "passed" if report["passed"] else "FAILED"
    rows = [
        (
            m,
            f"{b[m]:.2f}",
            f"{a[m]:.2f}",
            f"{points_change(report['drop_points'])} (max drop {report['max_drop']:g})",
        ),
        ("size (MB)", f"{b['size_mb']:.1f}", f"{a['size_mb']:.1f}", f"x{report['size_ratio']}"),
    ]
    for key in b["latency_ms"]:
        label = key.replace("_", " ")
        gain = speed_change(report["speedup"][key])
        rows.append(
            (f"latency {label} (ms)", f"{b['latency_ms'][key]:.2f}", f"{a['latency_ms'][key]:.2f}", gain)
        )
    lines = [
        f"# Parity: {report['format']} export of {report['source_run']}",
        "",
        f"Data: {report['data']['name']} ({report['data']['rows']} rows). Verdict: **{verdict}**.",
        "",
        "| | before (PyTorch eager) | after | change |",
        "|---|---|---|---|",
        *(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows),
        "",
        f"Predictions agree on {100 * report['agreement']:.2f}% of rows; "
        f"largest logit difference {report['max_logit_diff']:.4g}.",
        "",
    ]
    return "\n".join(lines)
