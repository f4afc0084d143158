"""What counts as no value in a table cell, for every reader of the recommender's files.

CSV gives a blank string, JSONL ``null`` (None, or NaN once in a float column), Parquet NaN, NA or
NaT; each is "no value" alike, so a missing rating or id reads the same from every format.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tunelab.data.scripts import has_visible_text


def is_blank(value: Any) -> bool:
    """No value: None, NaN, pandas' NA or NaT (JSONL nulls, Parquet nulls), or no visible character
    (only spaces or zero-width ones such as U+200B: ``strip()`` keeps those, and such a cell was an id
    or a value no one can see)."""
    if value is None or (isinstance(value, str) and not has_visible_text(value)):
        return True
    if isinstance(value, list | tuple | dict | set | np.ndarray):  # a list of values is a value
        return False
    return bool(pd.isna(value))


def text_or_blank(value: Any) -> str:
    """A cell as stripped text, ``""`` for no value (never "nan" or "<NA>")."""
    return "" if is_blank(value) else str(value).strip()
