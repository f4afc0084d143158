"""Report plots give an ASCII-only text the first font family alone, with the same PNG bytes.

The CJK fallback list was set on every text; matplotlib then laid each one out through a font
chain, about a third of a small figure's drawing time, though the first family (DejaVu Sans) has
every ASCII glyph. A text with any other character keeps the whole list (Chinese labels must not
turn into boxes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from matplotlib.text import Text

from tunelab.evaluate import plots

HISTORY = [{"event": "train", "step": s, "epoch": s / 10, "loss": 1 / s} for s in range(1, 40)] + [
    {"event": "eval", "split": "dev", "step": s, "epoch": s / 10, "loss": 2 / s, "accuracy": 0.5 + s / 100}
    for s in range(10, 40, 10)
]


def full_chain(fig) -> None:
    """The fonts as set before: the whole family list on every text."""
    families = list(plots.font_families())
    for text in fig.findobj(Text):
        text.set_fontfamily(families)


DRAWINGS: dict[str, Callable[[], object]] = {
    "curves": lambda: plots.training_curves_png(HISTORY),
    "confusion": lambda: plots.confusion_matrix_png(
        np.random.RandomState(0).randint(0, 9, (5, 5)).tolist(), [f"intent_{i}" for i in range(5)]
    ),
    "per-class F1": lambda: plots.per_class_f1_png(
        [{"label": f"intent_{i}", "f1": i / 5, "support": 3} for i in range(5)], macro_f1=0.4
    ),
}


@pytest.mark.parametrize("name", sorted(DRAWINGS))
def test_an_ascii_figure_draws_the_same_bytes_as_with_the_whole_font_chain(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = DRAWINGS[name]()
    monkeypatch.setattr(plots, "_use_fonts", full_chain)
    before = DRAWINGS[name]()
    assert isinstance(now, bytes) and now.startswith(b"\x89PNG")
    assert now == before


def test_ascii_texts_get_the_first_family_and_others_the_whole_list() -> None:
    families = list(plots.font_families())
    fig = plots.new_figure(4, 3)
    ax = fig.subplots()
    ax.set_title("accuracy by class")
    ax.set_xlabel("退款 refunds")
    ax.set_ylabel("café")
    plots._use_fonts(fig)
    assert ax.title.get_fontfamily() == families[:1]
    assert ax.xaxis.label.get_fontfamily() == families
    assert ax.yaxis.label.get_fontfamily() == families
