"""Labelled text data: read any supported file, check it, encode labels, make splits.

Typical use::

    from tunelab.config import DataConfig
    from tunelab.data import load_splits

    splits = load_splits(DataConfig(train="train.csv", label_column="category"))
    splits.train.texts[0], splits.labels.names[splits.train.labels[0]]

Formats are CSV, TSV, JSONL (or a JSON array), Parquet and Excel (.xlsx, ``data.sheet``), chosen
by ``data.format`` or the file
extension (``.txt`` is read as delimited text with ``data.separator``). Every user mistake raises
:class:`tunelab.errors.DataError` with one line naming the file, the row and the fix. Rows are
counted from 1 and the header is not a row.
"""

from tunelab.data.dataset import Dataset
from tunelab.data.labelled import load_labelled, read_texts
from tunelab.data.labels import LabelMap
from tunelab.data.readers import read_table
from tunelab.data.splits import Splits, load_splits

__all__ = ["Dataset", "LabelMap", "Splits", "load_labelled", "load_splits", "read_table", "read_texts"]
