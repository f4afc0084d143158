"""Report plots draw Chinese label names with a CJK font, not as empty boxes."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Iterator

import pytest

from tunelab.evaluate import plots

LABELS = ["正面评价", "负面（质量差）", "中性 neutral", "負面 差評"]


@pytest.fixture
def fresh_fonts() -> Iterator[None]:
    plots.font_families.cache_clear()
    plots._warn_no_cjk_font.cache_clear()
    yield
    plots.font_families.cache_clear()
    plots._warn_no_cjk_font.cache_clear()


def glyph_warnings(draw: Callable[[], bytes | None]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught, pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("always")
        patch.setattr(plots, "_GLYPH_MISSING", r"(?!)")  # let matplotlib's per-glyph warnings through
        png = draw()
    assert png is not None and png.startswith(b"\x89PNG")
    # "missing from font(s)" from matplotlib 3.9, "missing from current font" in 3.8 (the floor)
    return [str(w.message) for w in caught if re.search(r"missing from (current )?font", str(w.message))]


DRAWINGS: dict[str, Callable[[], bytes | None]] = {
    "confusion matrix": lambda: plots.confusion_matrix_png(
        [[40, 3, 2, 1], [5, 30, 1, 0], [0, 2, 20, 1], [1, 0, 0, 9]], LABELS
    ),
    "per-class F1": lambda: plots.per_class_f1_png(
        [{"label": name, "f1": 0.9 - 0.1 * i} for i, name in enumerate(LABELS)], 0.75
    ),
    "top confusions": lambda: plots.top_confusions_png(
        [
            {"true": LABELS[0], "predicted": LABELS[1], "count": 5},
            {"true": LABELS[3], "predicted": LABELS[2], "count": 2},
        ]
    ),
}


@pytest.mark.parametrize("name", DRAWINGS)
def test_chinese_labels_render_without_missing_glyphs(fresh_fonts: None, name: str) -> None:
    assert len(plots.font_families()) == 2, "the CJK font package (pylopdf-fonts-zh-cn) is a dependency"
    assert glyph_warnings(DRAWINGS[name]) == []


def test_latin_labels_keep_dejavu_first(fresh_fonts: None) -> None:
    assert plots.font_families()[0] == "DejaVu Sans"


def test_without_a_cjk_font_one_warning_says_what_to_install(
    fresh_fonts: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(plots, "_cjk_font_file", lambda: None)
    with caplog.at_level(logging.WARNING, logger="tunelab.evaluate.plots"):
        missing = glyph_warnings(DRAWINGS["confusion matrix"])
        glyph_warnings(DRAWINGS["per-class F1"])
    assert missing, "DejaVu Sans alone has no CJK glyphs: the check above would catch a missing font"
    notes = [r.getMessage() for r in caplog.records if "no CJK font" in r.getMessage()]
    assert len(notes) == 1 and "pylopdf-fonts-zh-cn" in notes[0]
