"""Read a single file for a finished run: for evaluation or for prediction.

Both readers take the run's columns and label map from ``cfg``; how the file is laid out
(separator, header, encoding) is the file's own, see :func:`tunelab.data.file_options.options_for_file`.
A file that lacks a column the run needs fails naming the columns found, how the file was read and
the ones needed. Rows dropped for empty text are logged (there is no ``notes`` list to return here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tunelab.config import DataConfig
from tunelab.data.columns import Extracted, LabelKind, describe_columns, extract
from tunelab.data.dataset import Dataset
from tunelab.data.file_options import describe_reading, row_convention
from tunelab.data.labels import LabelMap
from tunelab.data.readers import detect_format, read_table
from tunelab.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with their label names, as a person wrote them in a file (``tunelab.read_labelled``).

    Attributes:
        texts: the text of each row kept (stripped; rows with an empty text are dropped).
        labels: the label name of each row (a list of names for multi-label data).
        rows: the 1-based row number of each text in its file, for messages.
        source: the file (or split) they came from.
    """

    texts: list[str]
    labels: list[Any]
    rows: list[int]
    source: str


def read_labelled(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    multi_label: bool = False,
    encoding: str = "auto",
) -> LabelledTexts:
    """Read a labelled file (CSV, TSV, JSONL, Parquet) into texts and label names, no run needed.

    For code built on runs (the apps: a bot's dev and eval files) that reads files the way
    ``tunelab train`` does: same formats, encodings, separators and one-line errors.

    Raises:
        DataError: the file is missing or unreadable, or lacks a column; the message names it.
    """
    cfg = DataConfig(text_column=text_column, label_column=label_column, encoding=encoding)
    parts = read_extracted(path, cfg, label_kind="many" if multi_label else "one")
    assert parts.labels is not None  # label_kind given
    labels = [list(x) for x in parts.labels] if multi_label else [str(x) for x in parts.labels]
    return LabelledTexts(texts=list(parts.texts), labels=labels, rows=list(parts.rows), source=str(path))


def read_extracted(
    path: str | Path,
    cfg: DataConfig,
    *,
    label_kind: LabelKind | None,
    field: str | None = None,
    text_column: str | None = None,
) -> Extracted:
    """Read ``path`` and take its configured columns (see :func:`tunelab.data.columns.extract`)."""
    df = read_table(path, cfg, field=field)
    has_header_row = cfg.header and detect_format(Path(path), cfg) in ("csv", "tsv", "excel")
    return extract(
        df,
        cfg,
        source=str(path),
        label_kind=label_kind,
        text_column=text_column,
        has_header_row=has_header_row,
        rows_are=row_convention(path, cfg),
    )


def load_labelled(path: str | Path, cfg: DataConfig, labels: LabelMap) -> Any:
    """Read a labelled file (an evaluation set) with the run's columns and label ids.

    The run's task (``labels.task``) reads it: see ``Task.read_labelled``.

    Args:
        path: the file, e.g. given to ``tunelab evaluate``.
        cfg: the run's data config (columns, format, encoding).
        labels: the run's label map.

    Raises:
        DataError: the file cannot be read, lacks a column, or has a label the run never saw.
    """
    from tunelab.tasks import get_task  # lazy: the tasks import this module

    return get_task(labels.task).read_labelled(path, cfg, labels, field=None)


def read_labelled_table(
    path: str | Path, cfg: DataConfig, labels: LabelMap, *, label_kind: LabelKind, field: str | None = None
) -> Dataset:
    """A labelled table file (CSV, TSV, JSONL, Parquet) -> texts and label ids (one or many per row).

    Raises:
        DataError: the file cannot be read, lacks a column, or has a label the run never saw.
    """
    df = read_table(path, cfg, field=field)
    needed = [(cfg.text_column, "text", "data.text_column")]
    if cfg.text_pair_column:
        needed.append((cfg.text_pair_column, "text pair", "data.text_pair_column"))
    needed.append((cfg.label_column, "label", "data.label_column"))
    _require_columns(df, path, cfg, needed, labelled_for=labels.task)
    rows_are = row_convention(path, cfg)
    parts = extract(df, cfg, source=str(path), label_kind=label_kind, rows_are=rows_are)
    for note in parts.notes:
        log.warning(note)
    assert parts.labels is not None  # label_kind is given, so labels were read
    ids = labels.encode(parts.labels, source=str(path), rows=parts.rows, rows_are=rows_are)
    return Dataset(texts=parts.texts, text_pairs=parts.pairs, labels=ids, source=str(path))


def read_texts(
    path: str | Path, cfg: DataConfig, *, text_column_given: bool = False
) -> tuple[list[str], list[str] | None, pd.DataFrame]:
    """Read the texts to predict; labels, if present, are ignored.

    The text column is ``cfg.text_column`` if the file has it, else a column named ``text``, so
    that a plain ``{"text": ...}`` JSONL file works with any run. ``text_column_given``: the
    user named the column (``data.text_column=...``), so a file without it is refused rather than
    read from ``text`` (a typo predicted the wrong column without a word).

    Returns:
        ``(texts, text_pairs, frame)``: ``frame`` holds the rows kept (rows with empty text are
        dropped or rejected as ``cfg.empty_text`` says), aligned with ``texts``, with every column
        so a caller can echo an id column; its index is the 1-based row number in the file.

    Raises:
        DataError: the file cannot be read or has no text column.
    """
    df = read_table(path, cfg)
    fallback = not text_column_given and cfg.text_column not in df.columns and "text" in df.columns
    text_column = "text" if fallback else cfg.text_column
    what = "text" if text_column_given else "text, or a column named 'text'"
    needed = [(text_column, what, "data.text_column")]
    if cfg.text_pair_column:
        needed.append((cfg.text_pair_column, "text pair", "data.text_pair_column"))
    _require_columns(df, path, cfg, needed)
    parts = extract(df, cfg, source=str(path), label_kind=None, text_column=text_column)
    for note in parts.notes:
        log.warning('%s (%s, as in the output\'s "row")', note, row_convention(path, cfg))
    return parts.texts, parts.pairs, parts.frame


def _require_columns(
    df: pd.DataFrame,
    path: str | Path,
    cfg: DataConfig,
    needed: list[tuple[str, str, str]],
    *,
    labelled_for: str | None = None,
) -> None:
    """Fail in one line naming the columns found, how they were read, and the ones needed.

    ``needed`` holds ``(column, what it is, the setting that names it)`` per column;
    ``labelled_for``: the run's task when labelled data is read (eval, an export's parity check),
    None for the texts predict reads.
    """
    if all(column in df.columns for column, _, _ in needed):
        return
    if {"tokens", "tags"} <= set(map(str, df.columns)):  # a header hint makes no sense for these
        if labelled_for is not None:
            # labelled data given for labelled data: it is the task that differs, not the use
            names = [repr(column) for column, _, _ in needed]
            columns = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
            raise DataError(
                f"{path}: tokens and tags: labelled NER data, but this run is a {labelled_for} "
                f"classifier: give a file with {columns} columns"
            )
        raise DataError(
            f"{path}: tokens and tags: labelled NER data (for tunelab eval --data); predict reads raw "
            f"texts: give a file with a {needed[0][0]!r} column"
        )
    wanted = " and ".join(f"{column!r} ({role})" for column, role, _ in needed)
    names = [column for column, _, _ in needed]
    example = ",".join(names)
    if len(df.columns) != len(names):
        example = f"one name per column, with {example}"
    pick = " ".join(f"{setting}=NAME" for _, _, setting in needed)
    raise DataError(
        f"{path}: columns {describe_columns(df)} (read as {describe_reading(path, cfg)}); the run needs "
        f"{wanted}. Rename the file's columns, or pick them with {pick}, or if the first row is data "
        f"give data.header=false data.column_names=[{example}] (see data.separator, data.encoding too)"
    )
