"""PNG charts for the evaluation report, rendered with matplotlib's Agg backend into bytes.

Figures are built as ``matplotlib.figure.Figure`` with an explicit ``FigureCanvasAgg`` instead of
through ``pyplot``: that leaves the process-wide backend alone (a notebook keeps its own), never
registers the figure in pyplot's global list (so nothing leaks when a caller forgets to close),
and is safe from worker threads. Each function returns PNG bytes; the caller decides where they
go (a file written atomically, a base64 URI in the HTML report). matplotlib is imported inside
the functions because it costs about a second and most commands never draw.

Label names can be Chinese (ChnSentiCorp's, a user's own), which DejaVu Sans, matplotlib's only
bundled font, draws as empty boxes. Every text gets the family list ``["DejaVu Sans", <CJK>]``:
matplotlib (>= 3.6) falls back glyph by glyph, so Latin text looks as before. The CJK font is Noto
Sans SC from the ``pylopdf-fonts-zh-cn`` package (OFL, 8 MB, no dependencies; it covers every
character of ChnSentiCorp, simplified and traditional, and kana, but no Hangul), else one fontconfig
lists for Chinese. Each text's characters are checked against the fonts' character maps: one
warning per script that none of them has (Korean with Noto Sans SC; Chinese with no CJK font) names
the script and the font to install, and the labels keep their text.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import shutil
import subprocess
import unicodedata
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

DPI = 100
ANNOTATE_COUNTS_UP_TO = 20
"""Largest number of classes whose confusion-matrix cells get their counts written in."""
_SMOOTH_ABOVE = 50  # train-loss points beyond which a smoothed curve is drawn over the raw one
MARKERS_UP_TO = 30
"""Curves with at most this many points get a marker on each: a short run's one or two train-loss
points are otherwise invisible (a line needs two points), and each point is a real measurement."""
NO_PLOTS_ENV = "TUNELAB_NO_PLOTS"
"""Set to 1 (or true, yes, on), run reports carry their tables and text but no PNGs."""
_FALSE = frozenset({"", "0", "false", "no", "off"})


def plots_skipped() -> bool:
    """Whether ``$TUNELAB_NO_PLOTS`` asks run reports to leave their PNGs out.

    Drawing a report's three figures takes about a second per train or eval, longer than a small
    run's training: a sweep of many runs, or CI, that never opens the pictures can skip them. An
    environment variable rather than a run option: it is about the machine's job, not the run, and
    ``eval``, ``search`` and the Python API read it alike.
    """
    return os.environ.get(NO_PLOTS_ENV, "").strip().lower() not in _FALSE


_EVAL_METRICS = ("accuracy", "macro_f1", "micro_f1")
_EVAL_COLORS = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")  # train is blue


def training_curves_png(
    history: Iterable[Mapping[str, Any]], metrics: Sequence[str] | None = None
) -> bytes | None:
    """``training_curves_figure`` as PNG bytes, or None when there is nothing to draw."""
    fig = training_curves_figure(history, metrics)
    return None if fig is None else figure_png(fig)


def training_curves_figure(
    history: Iterable[Mapping[str, Any]], metrics: Sequence[str] | None = None
) -> Figure | None:
    """Draw losses (top) and eval metrics (bottom) against the optimiser step.

    Metrics whose curves are identical are drawn once, named together in the legend; curves of a
    few points have a marker on each point, so a short run's plot is never an empty axis.

    Args:
        history: Records of the run's JSONL metrics log; ``"train"`` events give ``step`` and
            ``loss``, ``"eval"`` events give ``step``, ``split``, ``loss`` and metric keys.
            Records missing a step or value are skipped.
        metrics: the eval metrics to draw, by the names the log uses (NER: ``entity_f1``...);
            None: accuracy, macro- and micro-F1, and any other ``*_f1``/``*accuracy`` the log
            holds (a run selected on ``weighted_f1`` draws the metric it was selected on).

    Returns:
        The figure (on its own Agg canvas), or None when no record has anything to draw.
    """
    history = list(history)
    names = tuple(metrics) if metrics is not None else _logged_metrics(history)
    train_loss, evals = _history_series(history, names)
    eval_losses = {split: series["loss"] for split, series in evals.items() if series.get("loss")}
    eval_metrics = _distinct_curves(evals, names)
    if not train_loss and not eval_losses and not eval_metrics:
        return None

    has_losses = bool(train_loss or eval_losses)
    n_rows = int(has_losses) + int(bool(eval_metrics))
    fig = new_figure(8.0, 3.2 * n_rows + 0.4)
    axes = fig.subplots(n_rows, 1, sharex=True, squeeze=False)[:, 0]
    if has_losses:
        ax = axes[0]
        if train_loss:
            steps, values = zip(*train_loss, strict=True)
            smooth = len(values) > _SMOOTH_ABOVE
            ax.plot(
                steps,
                values,
                color="tab:blue",
                alpha=0.3 if smooth else 1.0,
                linewidth=1,
                marker="o" if len(values) <= MARKERS_UP_TO else None,
                markersize=3,
                label="train loss" + (" (raw)" if smooth else ""),
            )
            if smooth:
                ax.plot(steps, _ema(values), color="tab:blue", linewidth=1.8, label="train loss (smoothed)")
        for color, (split, points) in zip(_EVAL_COLORS, eval_losses.items(), strict=False):
            steps, values = zip(*points, strict=True)
            ax.plot(
                steps, values, color=color, marker="o", markersize=4, linewidth=1.5, label=f"{split} loss"
            )
        ax.set_ylabel("loss")
        ax.set_title("Loss")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    if eval_metrics:
        ax = axes[-1]
        for (split, keys), points in eval_metrics.items():
            steps, values = zip(*points, strict=True)
            ax.plot(
                steps, values, marker="o", markersize=4, linewidth=1.5, label=f"{split} {' = '.join(keys)}"
            )
        ax.set_ylabel("score")
        ax.set_title("Evaluation")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("step")
    from matplotlib.ticker import MaxNLocator

    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))  # optimiser steps: no 7.5
    steps = [p[0] for p in train_loss] + [
        p[0] for c in (*eval_losses.values(), *eval_metrics.values()) for p in c
    ]
    if max(steps) - min(steps) < 2:  # one step: matplotlib's ±6% around it has no integer tick
        axes[-1].set_xlim(min(steps) - 1, max(steps) + 1)
    return fig


def _logged_metrics(history: list[Any]) -> tuple[str, ...]:
    """The usual scores, then any other F1 or accuracy the eval records hold, in log order."""
    extra: list[str] = []
    for record in history:
        if isinstance(record, Mapping) and record.get("event") == "eval":
            extra += [
                k
                for k in record
                if isinstance(k, str)
                and (k.endswith("_f1") or k.endswith("accuracy"))
                and k not in _EVAL_METRICS
                and k not in extra
            ]
    return (*_EVAL_METRICS, *extra)


def _distinct_curves(
    evals: Mapping[str, Mapping[str, list[tuple[float, float]]]], metrics: Sequence[str] = _EVAL_METRICS
) -> dict[tuple[str, tuple[str, ...]], list[tuple[float, float]]]:
    """Eval metric curves by (split, metric names), one curve for metrics with identical points.

    Single-label accuracy always equals micro-F1 (and a perfect run makes every score 1.0): drawn
    separately, the later line hides the earlier and the legend lists curves nobody can see.
    Drawn once, the legend says ``dev accuracy = micro_f1``.
    """
    curves: dict[tuple[str, tuple[str, ...]], list[tuple[float, float]]] = {}
    for split, series in evals.items():
        groups: list[tuple[list[str], list[tuple[float, float]]]] = []
        for key in metrics:
            points = series.get(key)
            if not points:
                continue
            same = next((names for names, seen in groups if _same_points(seen, points)), None)
            if same is not None:
                same.append(key)
            else:
                groups.append(([key], points))
        curves.update({(split, tuple(names)): points for names, points in groups})
    return curves


def _same_points(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> bool:
    return len(a) == len(b) and all(
        sa == sb and math.isclose(va, vb, rel_tol=0, abs_tol=1e-9)
        for (sa, va), (sb, vb) in zip(a, b, strict=True)
    )


def confusion_matrix_png(matrix: Sequence[Sequence[int]], label_names: Sequence[str]) -> bytes:
    """Draw a heat map of the confusion matrix, rows = true label, columns = predicted.

    Colour is the share of each true class (row-normalised) so that errors on small classes
    show as clearly as on large ones; the cells are annotated with raw counts when there are at
    most ``ANNOTATE_COUNTS_UP_TO`` classes.

    Args:
        matrix: Square count matrix in label-id order.
        label_names: One name per row/column.

    Returns:
        PNG bytes.
    """
    counts = np.asarray(matrix, dtype=float)
    n = len(label_names)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix has shape {counts.shape}, expected ({n}, {n}) for {n} labels")
    row_totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)

    names = _short_names(label_names)
    tick_size = 9 if n <= 12 else 7
    side = min(max(4.5, 0.4 * n + 2.5), 16.0)
    # The tick labels take the figure's room: left of the map and below it. Grown by the longest
    # (about 0.07 inch a character at size 9), the map keeps its size and 40-character names no
    # longer push the "true" title off the canvas. Width: 1.2 inch for the colour bar and 0.6 more,
    # so the map's height is the bound: where its width was, constrained layout left the y labels
    # partly off the canvas (30 classes of short names too).
    labels = 0.07 * tick_size / 9 * max(map(_text_width, names), default=0)
    fig = new_figure(side + 1.8 + labels, side + labels)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(
        range(n),
        names,
        rotation=45 if n <= 12 else 90,
        ha="right" if n <= 12 else "center",
        fontsize=tick_size,
    )
    ax.set_yticks(range(n), names, fontsize=tick_size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    if n <= ANNOTATE_COUNTS_UP_TO:
        for i in range(n):
            for j in range(n):
                # Zeros clutter a larger matrix; on a small one they are information.
                if counts[i, j] == 0 and n > 10:
                    continue
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=9 if n <= 10 else 7,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    return figure_png(fig)


def top_confusions_png(
    confusions: Sequence[Mapping[str, Any]], label_names: Sequence[str] = ()
) -> bytes | None:
    """Draw the most frequent true -> predicted mistakes as horizontal bars, largest on top.

    Used instead of the heat map when there are too many classes for one to be readable.

    Args:
        confusions: ``{true, predicted, count}`` records, already sorted by count.
        label_names: the run's labels, in id order: long names are shortened over them, so a
            name's ``#id`` suffix is the one the report's other plots give it (shortened over the
            confusions' own names, the same label was ``#0`` here and ``#2`` beside it).

    Returns:
        PNG bytes, or None when there are no confusions.
    """
    # shortened together, so two long labels that share a start and an end stay apart here too
    named = [str(c.get(key)) for c in confusions for key in ("true", "predicted")]
    labels = list(dict.fromkeys([*map(str, label_names), *named]))
    short = dict(zip(labels, _short_names(labels), strict=True))
    rows = [
        (f"{short[str(c.get('true'))]} → {short[str(c.get('predicted'))]}", int(c.get("count", 0)))
        for c in confusions
    ]
    if not rows:
        return None
    from matplotlib.ticker import MaxNLocator

    names, counts = zip(*rows, strict=True)
    fig = new_figure(9.0, 0.32 * len(rows) + 1.3)
    ax = fig.add_subplot()
    ax.barh(range(len(rows)), counts, color="tab:red", alpha=0.8)
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()
    for y, count in enumerate(counts):
        ax.text(count, y, f" {count}", va="center", fontsize=8)
    ax.set_xlim(0, max(counts) * 1.12)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("examples")
    ax.set_title(f"Top {len(rows)} confusions (true → predicted)")
    ax.grid(axis="x", alpha=0.3)
    return figure_png(fig)


def coverage_curve_png(
    points: Sequence[Mapping[str, Any]], chosen: Mapping[str, Any] | None = None
) -> bytes | None:
    """Draw accuracy of the answers against the share answered, as the threshold loosens.

    Args:
        points: ``{threshold, coverage, accuracy}`` records (``evaluate.selective.CurvePoint``
            as dicts), strictest threshold first.
        chosen: The point a target picked, marked and labelled with its threshold.

    Returns:
        PNG bytes, or None when ``points`` is empty.
    """
    xs = [finite_number(p.get("coverage")) for p in points]
    ys = [finite_number(p.get("accuracy")) for p in points]
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None]
    if not pairs:
        return None
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    ax.plot([x for x, _ in pairs], [y for _, y in pairs], color="tab:blue", linewidth=1.5)
    if chosen is not None:
        cx, cy = finite_number(chosen.get("coverage")), finite_number(chosen.get("accuracy"))
        if cx is not None and cy is not None:
            ax.plot([cx], [cy], "o", color="tab:red")
            ax.annotate(
                f"threshold {chosen.get('threshold', 0):.3f}\n{cx:.0%} answered, {cy:.1%} right",
                (cx, cy),
                textcoords="offset points",
                xytext=(-10, -28),
                ha="right",
                fontsize=8,
            )
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("share of messages answered (the rest handed off)")
    ax.set_ylabel("share of answers right")
    ax.set_title("Answer or hand off: accuracy against coverage")
    ax.grid(alpha=0.3)
    return figure_png(fig)


def per_class_f1_png(
    per_class: Sequence[Mapping[str, Any]], macro_f1: float | None = None, title: str = "Per-class F1"
) -> bytes | None:
    """Draw per-class F1 as horizontal bars sorted best to worst, one row per class.

    Horizontal bars keep long label names readable; the figure grows with the number of classes
    (about 0.2 inch a class) so 77 classes still get one legible line each.

    Args:
        per_class: ``{label, f1, ...}`` records.
        macro_f1: Drawn as a dashed reference line when given.
        title: The plot's title, in the words of the report that shows it (NER: "Entity F1 per
            type"; the plot said "Per-class F1" under the report's "Entity F1 per type").

    Returns:
        PNG bytes, or None when ``per_class`` is empty.
    """
    # Shortened over every record, scored or not, so a name's suffix (its position) is the same
    # whichever labels have a score.
    labels = _short_names([c.get("label") for c in per_class])
    # a label with no score (absent from the data and never predicted) is no bar: not a 0 F1
    rows = [
        (label, finite_number(c.get("f1")) or 0.0)
        for label, c in zip(labels, per_class, strict=True)
        if c.get("f1") is not None
    ]
    if not rows:
        return None
    rows.sort(key=lambda row: -row[1])
    names, scores = zip(*rows, strict=True)
    n = len(rows)
    fig = new_figure(8.0, max(2.5, 0.2 * n + 1.2))
    ax = fig.add_subplot()
    ax.barh(range(n), scores, color="tab:green", alpha=0.8)
    ax.set_yticks(range(n), names, fontsize=8 if n <= 40 else 7)
    ax.invert_yaxis()
    ax.set_ylim(n - 0.5, -0.5)
    for y, score in enumerate(scores):
        x, inside = _value_label_x(score, macro_f1)
        ax.text(
            x,
            y,
            f"{score:.2f}",
            va="center",
            fontsize=7,
            ha="right" if inside else "left",
            color="white" if inside else "black",
        )
    if macro_f1 is not None:
        ax.axvline(macro_f1, color="black", linestyle="--", linewidth=1, label=f"macro F1 {macro_f1:.2f}")
        # Above the axes' right corner, beside the title: inside them, any corner covers the value
        # written at some class's bar end (lower right: the worst class's, when every score is high).
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, borderaxespad=0.2)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("F1")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return figure_png(fig)


_INSIDE_FROM = 0.15
"""Smallest score whose value label fits inside its bar (white on green)."""
_LABEL_SPAN = 0.07
"""A value label's room along the F1 axis: 0.01 of gap and "0.00" at size 7 (about 0.05 on the
narrowest axes, those beside 40-character names), with some to spare."""


def _value_label_x(score: float, macro_f1: float | None) -> tuple[float, bool]:
    """Where a bar's value label starts (or ends, inside the bar), and whether it is inside the bar.

    Inside the bar end when there is room, else just past it; past the dashed macro-F1 line when
    that would cross the label: with a macro F1 of 0.03 the line ran through every "0.00" written
    at 0.01, and through the white number of a bar ending just past it.
    """

    def crosses(start: float) -> bool:
        return macro_f1 is not None and start <= macro_f1 <= start + _LABEL_SPAN

    if score >= _INSIDE_FROM and not crosses(score - _LABEL_SPAN):
        return score - 0.01, True
    if crosses(score):
        return max(score, macro_f1 or 0.0) + 0.01, False
    return score + 0.01, False


def _history_series(
    history: Iterable[Mapping[str, Any]], metrics: Sequence[str] = _EVAL_METRICS
) -> tuple[list[tuple[float, float]], dict[str, dict[str, list[tuple[float, float]]]]]:
    """Split log records into train-loss points and per-split eval points, dropping unusable ones."""
    train: list[tuple[float, float]] = []
    evals: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for record in history:
        if not isinstance(record, Mapping):
            continue
        step = finite_number(record.get("step"))
        if step is None:
            continue
        event = record.get("event")
        if event == "train":
            loss = finite_number(record.get("loss"))
            if loss is not None:
                train.append((step, loss))
        elif event == "eval":
            series = evals.setdefault(str(record.get("split") or "dev"), {})
            for key in ("loss", *metrics):
                value = finite_number(record.get(key))
                if value is not None:
                    series.setdefault(key, []).append((step, value))
    train.sort()
    for series in evals.values():
        for points in series.values():
            points.sort()
    return train, evals


def finite_number(value: Any) -> float | None:
    """A finite float, or None for anything a log could hold instead (None, NaN, text, bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _ema(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average, bias-corrected so the curve starts at the first value."""
    smoothed, running = [], 0.0
    for i, value in enumerate(values, start=1):
        running = weight * running + (1 - weight) * value
        smoothed.append(running / (1 - weight**i))
    return smoothed


def _text_width(text: str) -> int:
    """``text``'s width in Latin characters: a CJK character is drawn about twice as wide."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _short_names(names: Sequence[Any], limit: int = 40) -> list[str]:
    """The labels of one plot as drawn: each at most ``limit`` characters and no two alike, ``$``
    escaped (matplotlib reads text between two ``$`` as math: one failed the whole report, two drew
    "refund $5 to $10" in italics).

    A long name keeps its start and its end around a "…": cut at the end, names that differ only
    there (``..._declined_at_merchant_abroad``, ``..._at_home``) were drawn alike. Names still
    alike get `` #i``, their position in ``names`` (the label id where ``names`` is the label list).
    """
    texts = [str(name) for name in names]
    short = [_middle_cut(text, limit) for text in texts]
    suffixed: set[int] = set()
    while True:
        seen: dict[str, list[int]] = {}
        for i, text in enumerate(short):
            seen.setdefault(text, []).append(i)
        alike = [i for group in seen.values() if len(group) > 1 for i in group if i not in suffixed]
        if not alike:  # each round suffixes one name at least, and suffixed names differ from each other
            return [text.replace("$", r"\$") for text in short]
        for i in alike:
            suffix = f" #{i}"
            short[i] = _middle_cut(texts[i], limit - len(suffix)) + suffix
            suffixed.add(i)


def _middle_cut(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and end around "…"."""
    if len(text) <= limit:
        return text
    keep = max(limit - 1, 0)
    head = (keep + 1) // 2
    return text[:head] + "…" + text[len(text) - (keep - head) :]


def new_figure(width: float, height: float) -> Figure:
    """A ``width`` x ``height`` inch figure on its own Agg canvas (no pyplot, thread-safe).

    Public for other reports (the monitor's dashboard) that draw like the evaluation report.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


@functools.cache
def font_families() -> tuple[str, ...]:
    """The families every text is drawn with: DejaVu Sans, then a CJK fallback when one is found.

    Registered with matplotlib's font manager once per process, on the first figure.
    """
    from matplotlib import font_manager

    path = _cjk_font_file()
    if path is None:
        return ("DejaVu Sans",)
    try:
        font_manager.fontManager.addfont(str(path))
        name = font_manager.FontProperties(fname=str(path)).get_name()
    except (OSError, RuntimeError, ValueError) as exc:  # an unreadable or broken font file
        log.warning("CJK font %s could not be loaded (%s); Chinese labels may show as boxes", path, exc)
        return ("DejaVu Sans",)
    return ("DejaVu Sans", name)


def _cjk_font_file() -> Path | None:
    """Noto Sans SC from ``pylopdf-fonts-zh-cn``, else fontconfig's first font for Chinese."""
    try:
        import pylopdf_fonts_zh_cn

        path = Path(pylopdf_fonts_zh_cn.sans_path())
        if path.is_file():
            return path
    except ImportError:
        pass
    fc_list = shutil.which("fc-list")
    if fc_list:
        try:
            listed = subprocess.run(
                [fc_list, ":lang=zh", "file"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            listed = ""
        for line in sorted(listed.splitlines()):
            path = Path(line.strip().rstrip(":"))
            if path.suffix.lower() in (".ttf", ".otf", ".ttc") and path.is_file():
                return path
    return None


@functools.cache
def _covered(families: tuple[str, ...]) -> frozenset[int] | None:
    """The code points ``families`` have glyphs for, read from their character maps once per
    process; None when a family's file cannot be found or read (then nothing is checked rather than
    every character called missing)."""
    from matplotlib import font_manager, ft2font

    codes: set[int] = set()
    for family in families:
        try:
            path = font_manager.findfont(
                font_manager.FontProperties(family=family), fallback_to_default=False
            )
            codes.update(ft2font.FT2Font(path).get_charmap())
        except (OSError, RuntimeError, ValueError):
            return None
    return frozenset(codes)


_CHINESE_FONT = "pip install pylopdf-fonts-zh-cn, or install a system font such as fonts-noto-cjk"
#: pylopdf-fonts-zh-cn's Noto Sans SC is a Chinese font (it has kana, but no Hangul): Korean and
#: Japanese need a font made for them.
_CJK_FONT = "install a system font that has them, such as fonts-noto-cjk"


def _script_fix(char: str) -> tuple[str, str]:
    """The script of ``char`` as a message names it, and the font to install for it."""
    words = unicodedata.name(char, "UNKNOWN").split()
    if "HANGUL" in words:
        return "Korean", _CJK_FONT
    if "HIRAGANA" in words or "KATAKANA" in words:
        return "Japanese", _CJK_FONT
    if words[0] in ("CJK", "IDEOGRAPHIC", "FULLWIDTH", "HALFWIDTH", "BOPOMOFO"):
        return "Chinese", _CHINESE_FONT  # ideographs and the full-width punctuation around them
    return words[0].title(), "install a system font that has them"


def _check_glyphs(text: str) -> None:
    """Warn, once per script, about characters of ``text`` that no plot font has: they draw as boxes.

    matplotlib itself warns once per glyph ("Glyph ... missing from font(s)"), naming neither the
    script nor a fix, and only when the figure is drawn: ``figure_png`` ignores those."""
    if text.isascii():
        return
    covered = _covered(font_families())
    if covered is None:
        return
    for char in set(text):
        if ord(char) not in covered and char.isprintable() and not char.isspace():
            _warn_no_cjk_font(*_script_fix(char))


@functools.cache
def _warn_no_cjk_font(script: str, fix: str) -> None:
    """One warning per script and process (the name is older than the check: tests reset its cache)."""
    families = font_families()
    if len(families) == 1 and script in ("Chinese", "Japanese", "Korean"):
        where = "no CJK font found"
    else:
        where = f"the plot fonts ({', '.join(families)}) have no glyphs for them"
    log.warning("%s characters in plot labels show as boxes: %s (%s)", script, where, fix)


# matplotlib's warning per character no font has (``figure_png`` ignores it). A module constant: a
# test can set a pattern that matches nothing, to see whether the fonts have a label's glyphs.
# "missing from font(s) ..." from matplotlib 3.9, "missing from current font." before it
_GLYPH_MISSING = r"Glyph \d+ .* missing from (current )?font"


def _use_fonts(fig: Figure) -> None:
    """Give every text of ``fig`` the family list, so CJK glyphs fall back to the CJK font (a text
    in ASCII only the first family), and warn about characters none of the fonts has
    (:func:`_check_glyphs`).

    Set per text rather than through ``rcParams``: that is process-wide and not thread-safe.
    """
    from matplotlib.text import Text

    families = list(font_families())
    for text in fig.findobj(Text):
        content = text.get_text()
        _check_glyphs(content)
        # ASCII text gets the first family alone: it has every ASCII glyph, so the fallback never
        # applies, yet laying text out through a font chain took a third of a figure's drawing
        # time (the same PNG bytes either way; tests/unit/test_plot_fonts_ascii.py).
        text.set_fontfamily(families if not content.isascii() else families[:1])


def figure_png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes, every text with the CJK fallback font; the figure is cleared."""
    _use_fonts(fig)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # matplotlib's own "Glyph ... missing from font(s)", two stderr lines per character drawn,
        # even with -q: _check_glyphs has said it once per script, naming the font to install.
        warnings.filterwarnings("ignore", message=_GLYPH_MISSING, category=UserWarning)
        # No "Software" tag: the PNG then holds no matplotlib version string, so reruns diff cleanly.
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    fig.clear()  # drop artists now rather than at garbage collection; nothing else holds fig
    return buffer.getvalue()
