"""The evaluation report of a run: ``report.md``, ``report.html`` and the PNGs under ``plots/``.

``metrics.json`` stays the machine-readable record (the caller writes it); this is the page a
person reads. It works from the metrics dict alone, so a report can be rebuilt from an old
run's ``metrics.json`` and metrics log without the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_bytes, atomic_write_text
from tunelab.evaluate import plots
from tunelab.evaluate.render import IMAGE_DIR, Block, Image, Section, Table, Text, to_html, to_markdown
from tunelab.evaluate.run_context import (
    ReportContext,
    front_sections,
    mistake_section,
    run_facts,
    training_blocks,
)

TOP_CONFUSIONS_ABOVE = 30
"""Beyond this many classes a heat map is unreadable: draw the top confusions as bars instead."""

_NUMERIC = frozenset({1, 2, 3, 4})


def write_report(
    out_dir: Path,
    metrics: Mapping[str, Any],
    *,
    label_names: list[str],
    history: list[dict[str, Any]] | None = None,
    title: str = "tunelab report",
    meta: Mapping[str, Any] | None = None,
    split: str = "test",
    multi_label: bool | None = None,
    context: ReportContext | None = None,
) -> dict[str, Path]:
    """Write the human-readable report of one evaluated split into ``out_dir``.

    Every file is written atomically, so a report being rewritten is never seen half-done.
    Keys missing from ``metrics`` show as "—" rather than failing: the report is most needed
    when a run went wrong.

    Args:
        out_dir: Folder to write into (created if needed); PNGs go to ``out_dir/plots/``.
        metrics: The dict from ``compute_metrics`` (or read back from ``metrics.json``).
        label_names: Label names in id order; name the confusion-matrix axes.
        history: Records of the run's JSONL metrics log (``"train"`` and ``"eval"`` events);
            ``plots/training.png`` is drawn when it holds any loss or metric point.
        title: Heading of both reports.
        meta: Flat dict of run facts (model, method, data files, train time...) shown first.
        split: Name of the evaluated split, shown in the results heading.
        multi_label: The metrics are multi-label ones (subset accuracy, Hamming loss); None
            tells by the ``hamming_loss`` key.
        context: The run's hyper-parameters, data summary, notes on training and mistakes
            (``mistakes.csv`` is written beside the report when there are any).

    Returns:
        Path of each written file by file name: ``report.md``, ``report.html`` and those of
        ``training.png``, ``confusion_matrix.png`` (single-label, at most
        ``TOP_CONFUSIONS_ABOVE`` classes), ``top_confusions.png`` (single-label, more classes,
        at least one mistake) and ``per_class_f1.png`` that apply.

    Raises:
        ValueError: If the confusion matrix does not match ``label_names``.

    Example:
        >>> m = compute_metrics([0, 1, 1], [0, 1, 0], ["neg", "pos"])  # doctest: +SKIP
        >>> sorted(write_report(Path("runs/x"), m, label_names=["neg", "pos"]))  # doctest: +SKIP
        ['confusion_matrix.png', 'per_class_f1.png', 'report.html', 'report.md']
    """
    out_dir = Path(out_dir)
    images = _render_plots(metrics, label_names, history or [])
    written = {name: atomic_write_bytes(out_dir / IMAGE_DIR / name, data) for name, data in images.items()}
    if multi_label is None:
        multi_label = "hamming_loss" in metrics
    sections = _sections(
        metrics, meta or {}, split, images, multi_label=multi_label, context=context or ReportContext()
    )
    found = mistake_section(context or ReportContext(), out_dir)
    if found is not None:
        sections.append(found)
    sections.extend(skipped_plots_section())
    written["report.md"] = atomic_write_text(out_dir / "report.md", to_markdown(title, sections))
    written["report.html"] = atomic_write_text(out_dir / "report.html", to_html(title, sections, images))
    return written


def _render_plots(
    metrics: Mapping[str, Any], label_names: Sequence[str], history: Iterable[Mapping[str, Any]]
) -> dict[str, bytes]:
    """PNG bytes by file name, only for the plots that apply to this run (none under
    ``$TUNELAB_NO_PLOTS``)."""
    if plots.plots_skipped():
        return {}
    rendered: dict[str, bytes | None] = {"training.png": plots.training_curves_png(history)}
    matrix = metrics.get("confusion_matrix")
    if matrix is not None and len(label_names) <= TOP_CONFUSIONS_ABOVE:
        rendered["confusion_matrix.png"] = plots.confusion_matrix_png(matrix, label_names)
    elif matrix is not None:
        rendered["top_confusions.png"] = plots.top_confusions_png(
            metrics.get("top_confusions") or [], label_names
        )
    rendered["per_class_f1.png"] = plots.per_class_f1_png(
        metrics.get("per_class") or [], plots.finite_number(metrics.get("macro_f1"))
    )
    return {name: data for name, data in rendered.items() if data is not None}


def _sections(
    metrics: Mapping[str, Any],
    meta: Mapping[str, Any],
    split: str,
    images: Mapping[str, bytes],
    *,
    multi_label: bool,
    context: ReportContext,
) -> list[Section]:
    sections = [*run_facts(meta), *front_sections(context)]
    sections.append(Section(f"Results on {split}", _headline(metrics, multi=multi_label)))
    training = training_section(context, images)
    if training is not None:
        sections.append(training)

    per_class = metrics.get("per_class") or []
    blocks: list[Image | Table | Text] = []
    if "per_class_f1.png" in images:
        blocks.append(Image("per_class_f1.png", "Per-class F1, best to worst"))
    rows = [
        [
            str(c.get("label", "")),
            format_percent(c.get("precision")),
            format_percent(c.get("recall")),
            format_percent(c.get("f1")),
            format_count(c.get("support")),
        ]
        for c in per_class
    ]
    if rows:
        blocks.append(Table(["Label", "Precision", "Recall", "F1", "Support"], rows, _NUMERIC))
    if blocks:
        sections.append(Section("Per-class metrics", blocks))

    confusions = _confusion_blocks(metrics, images)
    if confusions:
        sections.append(Section("Confusions", confusions))
    return sections


def skipped_plots_section() -> list[Section]:
    """A last section saying the plots were left out on purpose (none when they were drawn)."""
    if not plots.plots_skipped():
        return []
    why = f"Not drawn: ${plots.NO_PLOTS_ENV} was set when this report was written (unset it to draw them)."
    return [Section("Plots", [Text(why)])]


def training_section(context: ReportContext, images: Mapping[str, bytes]) -> Section | None:
    """The notes on how training went, then the curves; None when there is neither."""
    blocks: list[Block] = training_blocks(context)
    if "training.png" in images:
        blocks.append(Image("training.png", "Training curves"))
    return Section("Training", blocks) if blocks else None


def _headline(metrics: Mapping[str, Any], *, multi: bool) -> list[Image | Table | Text]:
    rows = [
        ["Examples", format_count(metrics.get("n"))],
        ["Subset accuracy" if multi else "Accuracy", format_percent(metrics.get("accuracy"))],
    ]
    if multi:
        rows.append(["Hamming loss", format_percent(metrics.get("hamming_loss"))])
    # Added by the caller when known (evaluation loss, tuned multi-label threshold); not percents.
    loss, threshold = plots.finite_number(metrics.get("loss")), plots.finite_number(metrics.get("threshold"))
    if loss is not None:
        rows.append(["Loss", f"{loss:.4f}"])
    if threshold is not None:
        rows.append(["Decision threshold", f"{threshold:.2f}"])
    scores = ("precision", "recall", "f1")
    averages = [
        [kind.capitalize(), *(format_percent(metrics.get(f"{kind}_{score}")) for score in scores)]
        for kind in ("macro", "micro", "weighted")
    ]
    return [
        Table(["Metric", "Value"], rows, frozenset({1})),
        Table(["Average", "Precision", "Recall", "F1"], averages, frozenset({1, 2, 3})),
    ]


def _confusion_blocks(metrics: Mapping[str, Any], images: Mapping[str, bytes]) -> list[Image | Table | Text]:
    blocks: list[Image | Table | Text] = []
    if "confusion_matrix.png" in images:
        blocks.append(Image("confusion_matrix.png", "Confusion matrix (rows: true, columns: predicted)"))
    if "top_confusions.png" in images:
        blocks.append(Image("top_confusions.png", "Most frequent confusions (true → predicted)"))
    confusions = metrics.get("top_confusions")
    if confusions is None:  # multi-label: no confusion matrix exists
        return blocks
    if not confusions:
        return [*blocks, Text("No misclassified examples.")]
    support = {c.get("label"): c.get("support") for c in metrics.get("per_class") or []}
    rows = []
    for c in confusions:
        count, total = c.get("count"), support.get(c.get("true"))
        share = count / total if isinstance(count, int) and isinstance(total, int) and total else None
        rows.append(
            [str(c.get("true", "")), str(c.get("predicted", "")), format_count(count), format_percent(share)]
        )
    blocks.append(Table(["True", "Predicted", "Count", "Share of true"], rows, frozenset({2, 3})))
    return blocks


def format_percent(value: Any) -> str:
    """A 0..1 share as a percentage with two decimals; — for a missing or non-finite value."""
    number = plots.finite_number(value)
    return "—" if number is None else f"{100 * number:.2f}%"


def format_count(value: Any) -> str:
    """An integer with grouped thousands; — for anything else."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "—"


def format_value(value: Any) -> str:
    """Readable text for a meta value: grouped thousands, few decimals, lists joined."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"
    if isinstance(value, list | tuple | set):
        return ", ".join(format_value(item) for item in value)
    return str(value)
