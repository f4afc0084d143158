"""Which training rows equal a held-out (dev or test) row: such a row must not be trained on.

Rows that reach training from elsewhere than the training file (augmented rows, a continued run's
rehearsal sample) can repeat a dev or test text; training on it inflates the held-out scores and
the checkpoint chosen on them. Compared case- and space-insensitively, in Unicode NFC, the pair
text too.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from tunelab.data.dataset import Dataset
from tunelab.data.splits import Splits


def normalised(text: str, pair: str | None) -> tuple[str, str | None]:
    return _key(text), None if pair is None else _key(pair)


def _key(text: str) -> str:
    # NFC: "café" with a combining accent (NFD) prints as, and is, the same text as "café".
    return unicodedata.normalize("NFC", " ".join(text.split()).casefold())


def keys_of(rows: Any) -> list[tuple[str, str | None]]:
    """The normalised (text, pair) of each of ``rows`` (anything with ``texts`` and ``text_pairs``)."""
    pairs = rows.text_pairs or [None] * len(rows.texts)
    return [normalised(t, p) for t, p in zip(rows.texts, pairs, strict=True)]


def held_out_keys(splits: Splits) -> set[tuple[str, str | None]]:
    """The normalised (text, pair) of every dev and test row."""
    keys: set[tuple[str, str | None]] = set()
    for rows in (splits.dev, splits.test):
        if rows is not None:
            keys.update(keys_of(rows))
    return keys


def rows_not_held_out(rows: Dataset, splits: Splits) -> list[int]:
    """Indices of ``rows`` whose text (and pair) equals no dev or test row's."""
    held_out = held_out_keys(splits)
    return [i for i, key in enumerate(keys_of(rows)) if key not in held_out]
