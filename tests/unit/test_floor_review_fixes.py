"""Fixes from installing tunelab at the lowest versions pyproject.toml allows (``uv pip install
--resolution lowest-direct``): what the older libraries do, imitated on the pinned ones."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from tunelab.apps.recommend import recommender
from tunelab.errors import DataError
from tunelab.evaluate import plots


@pytest.fixture
def pandas_2_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pd.to_datetime`` as pandas 2 has it: nanoseconds only, so past 2262 is out of bounds."""
    real = pd.to_datetime

    def to_datetime(text: str, *args: object, **kwargs: object) -> object:
        if text[:4].isdigit() and not 1677 < int(text[:4]) < 2262:
            raise pd.errors.OutOfBoundsDatetime(f"Out of bounds nanosecond timestamp: {text}")
        return real(text, *args, **kwargs)

    monkeypatch.setattr(pd, "to_datetime", to_datetime)


def test_an_event_dated_9999_is_ahead_of_the_clock_also_on_pandas_2(pandas_2_bounds: None) -> None:
    """pandas 2.1 said "'9999-12-31T00:00:00' is not a time": an ISO 8601 time it could not hold."""
    with pytest.raises(DataError, match="ahead of the clock"):
        recommender._event_time("9999-12-31T00:00:00")


def test_an_old_event_pandas_2_cannot_hold_reads_as_pandas_3_reads_it(
    pandas_2_bounds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_pandas_2 = recommender._event_time("1000-01-01T00:00:00+02:00")
    monkeypatch.undo()
    assert on_pandas_2 == recommender._event_time("1000-01-01T00:00:00+02:00") == -30610231200.0


def test_a_non_time_pandas_2_cannot_hold_is_still_not_a_time(pandas_2_bounds: None) -> None:
    with pytest.raises(DataError, match="is not a time; use epoch seconds or ISO 8601"):
        recommender._event_time("3000-99-99")


@pytest.mark.parametrize(
    "message",
    [
        "Glyph 27491 (\\N{CJK UNIFIED IDEOGRAPH-6B63}) missing from current font.",  # matplotlib 3.8
        "Glyph 27491 (\\N{CJK UNIFIED IDEOGRAPH-6B63}) missing from font(s) DejaVu Sans.",  # 3.9 on
    ],
)
def test_the_missing_glyph_warning_is_recognised_in_both_wordings(message: str) -> None:
    """On matplotlib 3.8 each missing character printed a raw UserWarning after tunelab's hint
    (warnings filters match the message's start, as ``re.match`` does)."""
    assert re.match(plots._GLYPH_MISSING, message)
