"""Read a single file the way a finished run reads it: for evaluation or for prediction.

Both readers use the run's own columns and label map, so a file is read exactly as the training
data was. Rows dropped for empty text are logged (there is no ``notes`` list to return here).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from tunelab.config import DataConfig
from tunelab.data.columns import Extracted, describe_columns, extract
from tunelab.data.dataset import Dataset
from tunelab.data.labels import LabelMap
from tunelab.data.readers import detect_format, read_table
from tunelab.errors import DataError

log = logging.getLogger(__name__)


def read_extracted(
    path: str | Path,
    cfg: DataConfig,
    *,
    task: str | None,
    field: str | None = None,
    text_column: str | None = None,
) -> Extracted:
    """Read ``path`` and take its configured columns (see :func:`tunelab.data.columns.extract`)."""
    df = read_table(path, cfg, field=field)
    has_header_row = cfg.header and detect_format(Path(path), cfg) in ("csv", "tsv")
    return extract(
        df, cfg, source=str(path), task=task, text_column=text_column, has_header_row=has_header_row
    )


def load_labelled(path: str | Path, cfg: DataConfig, labels: LabelMap) -> Dataset:
    """Read a labelled file (an evaluation set) with the run's columns and label ids.

    Args:
        path: the file, e.g. given to ``tunelab evaluate``.
        cfg: the run's data config (columns, format, encoding).
        labels: the run's label map; its task decides how the label column is read.

    Raises:
        DataError: the file cannot be read, lacks a column, or has a label the run never saw.
    """
    parts = read_extracted(path, cfg, task=labels.task)
    for note in parts.notes:
        log.warning(note)
    assert parts.labels is not None  # task is given, so labels were read
    ids = labels.encode(parts.labels, source=str(path), rows=parts.rows)
    return Dataset(texts=parts.texts, text_pairs=parts.pairs, labels=ids, source=str(path))


def read_texts(path: str | Path, cfg: DataConfig) -> tuple[list[str], list[str] | None, pd.DataFrame]:
    """Read the texts to predict; labels, if present, are ignored.

    The text column is ``cfg.text_column`` if the file has it, else a column named ``text``, so
    that a plain ``{"text": ...}`` JSONL file works with any run.

    Returns:
        ``(texts, text_pairs, frame)``: ``frame`` holds the rows kept (rows with empty text are
        dropped or rejected as ``cfg.empty_text`` says), aligned with ``texts``, with every column
        so a caller can echo an id column; its index is the 1-based row number in the file.

    Raises:
        DataError: the file cannot be read or has no text column.
    """
    df = read_table(path, cfg)
    text_column = cfg.text_column if cfg.text_column in df.columns else "text"
    if text_column not in df.columns:
        raise DataError(
            f"{path}: no text column {cfg.text_column!r} or 'text' (columns: {describe_columns(df)}); "
            "rename the column, or set data.text_column"
        )
    has_header_row = cfg.header and detect_format(Path(path), cfg) in ("csv", "tsv")
    parts = extract(
        df, cfg, source=str(path), task=None, text_column=text_column, has_header_row=has_header_row
    )
    for note in parts.notes:
        log.warning(note)
    return parts.texts, parts.pairs, parts.frame
