"""The NER evaluation report: results, training curves, per-type table and plot, and the errors.

Built from the metrics dict alone (as ``tunelab.evaluate.report`` does for classification), so it
can be rebuilt from an old run's ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_bytes, atomic_write_text
from tunelab.evaluate import plots
from tunelab.evaluate.render import IMAGE_DIR, Image, Section, Table, Text, to_html, to_markdown
from tunelab.evaluate.report import format_count, format_percent, skipped_plots_section, training_section
from tunelab.evaluate.run_context import ReportContext, front_sections, mistake_section, run_facts
from tunelab.tasks.token_classification.metrics import ERROR_KINDS

# The training-curve plot draws NER's own scores under their own names (they were renamed to
# accuracy and micro_f1, which the report's text never mentions).
CURVE_METRICS = ("entity_f1", "token_accuracy", "macro_f1")


def write_report(
    out_dir: Path,
    metrics: Mapping[str, Any],
    *,
    history: list[dict[str, Any]] | None = None,
    title: str = "tunelab report",
    meta: Mapping[str, Any] | None = None,
    split: str = "test",
    context: ReportContext | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the PNGs under ``plots/`` into ``out_dir`` (atomically).

    Missing metrics show as "—" rather than failing: a report is most needed when a run went wrong.
    ``context`` adds the run's hyper-parameters, data summary, notes on training and the sentences
    with wrong entities, most confident first (all of them in ``mistakes.csv``).

    Returns:
        Path of each written file by file name (``report.md``, ``report.html``, ``training.png``
        and ``per_type_f1.png`` where there is something to draw).
    """
    out_dir = Path(out_dir)
    images = (
        {}
        if plots.plots_skipped()
        else {
            "training.png": plots.training_curves_png(history or [], CURVE_METRICS),
            "per_type_f1.png": plots.per_class_f1_png(
                metrics.get("per_type") or [],
                plots.finite_number(metrics.get("macro_f1")),
                title="Entity F1 per type",  # as the report names it (the plot said "Per-class F1")
            ),
        }
    )
    drawn = {name: data for name, data in images.items() if data is not None}
    written = {name: atomic_write_bytes(out_dir / IMAGE_DIR / name, data) for name, data in drawn.items()}
    context = context or ReportContext()
    sections = _sections(metrics, meta or {}, split, drawn, context)
    found = mistake_section(context, out_dir)
    if found is not None:
        sections.append(found)
    sections.extend(skipped_plots_section())
    written["report.md"] = atomic_write_text(out_dir / "report.md", to_markdown(title, sections))
    written["report.html"] = atomic_write_text(out_dir / "report.html", to_html(title, sections, drawn))
    return written


def _sections(
    metrics: Mapping[str, Any],
    meta: Mapping[str, Any],
    split: str,
    images: Mapping[str, bytes],
    context: ReportContext,
) -> list[Section]:
    sections = [*run_facts(meta), *front_sections(context)]
    loss = plots.finite_number(metrics.get("loss"))
    rows = [
        ["Sentences", format_count(metrics.get("n"))],
        ["Words", format_count(metrics.get("n_words"))],
        ["Entities", format_count(metrics.get("n_entities"))],
        ["Entity F1 (micro)", format_percent(metrics.get("entity_f1"))],
        ["Entity precision", format_percent(metrics.get("entity_precision"))],
        ["Entity recall", format_percent(metrics.get("entity_recall"))],
        ["Macro F1 (mean over types)", format_percent(metrics.get("macro_f1"))],
        ["Token accuracy", format_percent(metrics.get("token_accuracy"))],
        ["Loss", "—" if loss is None else f"{loss:.4f}"],
    ]
    note = Text("Entities are scored with seqeval in strict IOB2 mode: type and both boundaries must match.")
    sections.append(Section(f"Results on {split}", [Table(["Metric", "Value"], rows, frozenset({1})), note]))
    training = training_section(context, images)
    if training is not None:
        sections.append(training)
    blocks: list[Image | Table | Text] = []
    if "per_type_f1.png" in images:
        blocks.append(Image("per_type_f1.png", "Entity F1 per type, best to worst"))
    per_type = [
        [
            str(r.get("label", "")),
            format_percent(r.get("precision")),
            format_percent(r.get("recall")),
            format_percent(r.get("f1")),
            format_count(r.get("support")),
        ]
        for r in metrics.get("per_type") or []
    ]
    if per_type:
        blocks.append(
            Table(["Type", "Precision", "Recall", "F1", "Support"], per_type, frozenset({1, 2, 3, 4}))
        )
    if blocks:
        sections.append(Section("Per entity type", blocks))
    errors = metrics.get("errors")
    if isinstance(errors, Mapping):
        sections.append(Section("Errors", _error_blocks(errors)))
    return sections


def _error_blocks(errors: Mapping[str, Any]) -> list[Image | Table | Text]:
    counts = errors.get("counts") or {}
    total = sum(v for v in counts.values() if isinstance(v, int))
    if not total:
        return [Text("No entity errors.")]
    order = sorted(ERROR_KINDS, key=lambda k: -int(counts.get(k, 0)))
    blocks: list[Image | Table | Text] = [
        Text(
            "Each gold entity not found exactly is a wrong type (same words), a wrong boundary (same "
            "type, overlapping words), both, or missed (no overlapping prediction); a predicted "
            "entity overlapping no gold entity is spurious."
        ),
        Table(["Error", "Count"], [[k, format_count(counts.get(k, 0))] for k in order], frozenset({1})),
    ]
    confusions = errors.get("confusions") or []
    if confusions:
        rows = [
            [str(c.get("gold")), str(c.get("predicted")), format_count(c.get("count"))] for c in confusions
        ]
        blocks.append(Text("Type mix-ups (gold type → predicted type of an overlapping entity):"))
        blocks.append(Table(["Gold", "Predicted", "Count"], rows, frozenset({2})))
    examples = errors.get("examples") or {}
    rows = [
        [kind, str(e.get("gold", "")), str(e.get("predicted", "")), str(e.get("sentence", ""))]
        for kind in order
        for e in examples.get(kind) or []
    ]
    if rows:
        blocks.append(Text("Examples:"))
        blocks.append(Table(["Error", "Gold", "Predicted", "Sentence"], rows))
    return blocks
