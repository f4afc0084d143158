"""Review fixes to the report's plots: long labels drawn alike, an earlier report's plots left in
``--out``, and the per-class F1 plot's value labels under the macro-F1 line and its title."""

from __future__ import annotations

import importlib
import random
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.plots  # these tests read the report's PNGs (tests/conftest.py)

plots = importlib.import_module("tunelab.evaluate.plots")  # "tunelab.evaluate.plots" is also a name

LONG = [
    "customer_reports_card_payment_declined_at_merchant_abroad",
    "customer_reports_card_payment_declined_at_merchant_at_home",
    *(f"intent_number_{i:02d}_with_a_rather_long_descriptive_name" for i in range(28)),
]


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the plot functions draw, kept whole (``figure_png`` clears them)."""
    drawn: list[Any] = []
    monkeypatch.setattr(plots, "figure_png", lambda fig: drawn.append(fig) or b"png")
    return drawn


def _tick_texts(labels: list[Any]) -> list[str]:
    return [label.get_text() for label in labels]


# 1. labels sharing their first 39 characters were drawn alike


def test_shortened_names_of_long_labels_that_share_a_start_stay_distinct() -> None:
    short = plots._short_names(LONG)
    assert len(set(short)) == len(LONG)
    assert all(len(name) <= 40 for name in short)
    assert short[0].startswith("customer_reports") and short[0].endswith("merchant_abroad")
    assert short[1].endswith("at_home")


def test_shortened_names_that_share_start_and_end_get_their_position() -> None:
    names = ["a" * 30 + "1" + "b" * 30, "a" * 30 + "2" + "b" * 30, "short"]
    short = plots._short_names(names)
    assert len(set(short)) == 3 and all(len(name) <= 40 for name in short)
    assert short[0].endswith(" #0") and short[1].endswith(" #1") and short[2] == "short"


def test_short_names_are_drawn_as_they_are_with_dollars_escaped() -> None:
    names = ["refund", "billing question", "x" * 40, "refund $5"]
    assert plots._short_names(names) == ["refund", "billing question", "x" * 40, r"refund \$5"]


def test_the_confusion_matrix_of_the_reviewers_labels_names_each_row_apart(figures: list[Any]) -> None:
    n = len(LONG)
    rng = random.Random(0)
    matrix = [[rng.randrange(3) for _ in range(n)] for _ in range(n)]
    plots.confusion_matrix_png(matrix, LONG)
    ax = figures[0].axes[0]
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        texts = _tick_texts(ticks)
        assert len(set(texts)) == n and all(len(text) <= 40 for text in texts)


def test_the_per_class_plot_and_top_confusions_name_each_long_label_apart(figures: list[Any]) -> None:
    plots.per_class_f1_png([{"label": name, "f1": 0.5} for name in LONG[:2]], 0.5)
    plots.top_confusions_png(
        [
            {"true": LONG[0], "predicted": LONG[2], "count": 3},
            {"true": LONG[1], "predicted": LONG[2], "count": 2},
        ]
    )
    per_class, top = (fig.axes[0] for fig in figures)
    assert len(set(_tick_texts(per_class.get_yticklabels()))) == 2
    assert len(set(_tick_texts(top.get_yticklabels()))) == 2


def test_a_long_label_has_the_same_suffix_in_every_plot_of_a_report(figures: list[Any]) -> None:
    """Shortened over the confusions' own names, the at_home label was "#0" in the top confusions
    and "#2" in the per-class plot beside it: "#0" is another label's id."""
    names = [
        "other",
        *[
            f"refund_request_for_card_payment_{where}_made_in_euros_with_status"
            for where in ("ABROAD", "AT_HOME")
        ],
    ]
    plots.per_class_f1_png([{"label": name, "f1": 0.5} for name in names], 0.5)
    plots.top_confusions_png([{"true": names[2], "predicted": names[1], "count": 4}], names)
    per_class, top = (fig.axes[0] for fig in figures)
    at_home = next(t for t in _tick_texts(per_class.get_yticklabels()) if t.endswith("#2"))
    assert _tick_texts(top.get_yticklabels()) == [f"{at_home} → {at_home[:-2]}#1"]


# 2. an earlier report's plots stayed in --out beside the new report's


def _stage(root: Path, plot_names: list[str]) -> Path:
    stage = root / ".eval-x.tmp"
    (stage / "plots").mkdir(parents=True)
    (stage / "metrics.json").write_text("{}", encoding="utf-8")
    (stage / "report.md").write_text("new", encoding="utf-8")
    for name in plot_names:
        (stage / "plots" / name).write_bytes(b"new")
    return stage


def test_an_ner_report_moving_in_removes_the_classifiers_plots(tmp_path: Path) -> None:
    from tunelab.evaluate.on_run import _move_in

    target = tmp_path / "evalout"
    (target / "plots").mkdir(parents=True)
    for name in ("confusion_matrix.png", "per_class_f1.png", "training.png", "old.svg"):
        (target / "plots" / name).write_bytes(b"old")
    stage = _stage(target, ["per_type_f1.png", "training.png"])
    _move_in(stage, target, {})
    assert sorted(p.name for p in (target / "plots").iterdir()) == ["per_type_f1.png", "training.png"]
    assert (target / "plots" / "training.png").read_bytes() == b"new"


def test_moving_a_report_in_leaves_a_users_other_files(tmp_path: Path) -> None:
    from tunelab.evaluate.on_run import _move_in

    target = tmp_path / "evalout"
    (target / "plots" / "mine").mkdir(parents=True)
    kept = [
        target / "notes.png",
        target / "plots" / "notes.txt",
        target / "plots" / "mine" / "chart.png",
    ]
    for path in kept:
        path.write_bytes(b"mine")
    (target / "plots" / "confusion_matrix.png").write_bytes(b"old")
    _move_in(_stage(target, ["per_type_f1.png"]), target, {})
    assert all(path.read_bytes() == b"mine" for path in kept)
    assert not (target / "plots" / "confusion_matrix.png").exists()


# 3. value labels under the macro-F1 line; the NER plot titled "Per-class F1"


def _value_labels(ax: Any) -> list[Any]:
    return [text for text in ax.texts if text.get_text().replace(".", "").isdigit()]


def _crossed(text: Any, line: float, width: float = 0.05) -> bool:
    """Whether the dashed line at ``line`` runs through the value label ``text``."""
    x = text.get_position()[0]
    start, end = (x, x + width) if text.get_ha() == "left" else (x - width, x)
    return start - 0.005 <= line <= end + 0.005


@pytest.mark.parametrize(
    ("scores", "macro"),
    [
        ([0.2, 0.0, 0.0, 0.0, 0.0], 0.04),  # the reviewer's NER run: macro 0.03-0.04, many 0.00
        ([0.05, 0.02, 0.6], 0.06),
        ([0.9, 0.5, 0.52, 0.1], 0.5),  # a bar ending just past the line: its white number crossed
    ],
)
def test_no_value_label_lies_under_the_macro_f1_line(
    figures: list[Any], scores: list[float], macro: float
) -> None:
    plots.per_class_f1_png([{"label": f"type{i}", "f1": s} for i, s in enumerate(scores)], macro)
    labels = _value_labels(figures[0].axes[0])
    assert len(labels) == len(scores)
    assert [text.get_text() for text in labels if _crossed(text, macro)] == []
    assert all(text.get_position()[0] < 1.1 for text in labels)  # still inside the axes


def test_value_labels_away_from_the_line_stay_where_they_were(figures: list[Any]) -> None:
    plots.per_class_f1_png([{"label": "a", "f1": 0.9}, {"label": "b", "f1": 0.05}], 0.5)
    inside, outside = _value_labels(figures[0].axes[0])
    assert inside.get_position()[0] == pytest.approx(0.89) and inside.get_ha() == "right"
    assert outside.get_position()[0] == pytest.approx(0.06) and outside.get_ha() == "left"


def test_the_per_class_plot_takes_its_title(figures: list[Any]) -> None:
    rows = [{"label": "PER", "f1": 0.8}]
    plots.per_class_f1_png(rows, 0.8)
    plots.per_class_f1_png(rows, 0.8, title="Entity F1 per type")
    assert [fig.axes[0].get_title() for fig in figures] == ["Per-class F1", "Entity F1 per type"]


def test_the_ner_report_titles_its_plot_as_the_report_names_it(tmp_path: Path, figures: list[Any]) -> None:
    from tunelab.tasks.token_classification.report import write_report

    metrics = {
        "entity_f1": 0.03,
        "macro_f1": 0.03,
        "per_type": [
            {"label": "PER", "precision": 0.1, "recall": 0.1, "f1": 0.1, "support": 5},
            {"label": "LOC", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 4},
        ],
    }
    write_report(tmp_path, metrics)
    titles = [ax.get_title() for fig in figures for ax in fig.axes]
    assert "Entity F1 per type" in titles and "Per-class F1" not in titles
