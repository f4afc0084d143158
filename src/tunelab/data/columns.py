"""Pick the text, pair and label columns out of a raw table and check every cell.

This is where a table read from any format becomes plain Python lists. Problems are reported
with the file and the 1-based data row number (the header is not counted), which is the
DataFrame index set by :func:`tunelab.data.readers.read_table`.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from tunelab.config import DataConfig, column_clashes
from tunelab.data.scripts import has_visible_text
from tunelab.errors import ConfigError, DataError

_MAX_COLUMNS_SHOWN = 12

LabelKind = Literal["one", "many"]
"""How a label cell is read: one name per row, or a list of names (delimited or a JSON list)."""


@dataclass
class Extracted:
    """The columns of one file, before labels are turned into ids.

    Attributes:
        texts: stripped texts of the rows kept (what a classifier trains on and reads).
        pairs: stripped second texts, or None when the task has no pairs.
        labels: a label name (single-label) or a list of names (multi-label) per row, or None.
        rows: the 1-based row number in the file of each row kept.
        frame: the rows kept, with every column and its cells as the file gives them (texts not
            stripped), for callers that echo columns or need the text as given (NER offsets).
        notes: what was done to the data, for the user.
    """

    texts: list[str]
    pairs: list[str] | None
    labels: list[str] | list[list[str]] | None
    rows: list[int]
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)


# What tunelab predict --output writes: its own label(s) under these names, and the top-k (flattened
# as top_1_label, ... in CSV and Parquet) in every file; an input column of the same name is kept
# as <name>_input, the first re-scoring's as <name>_input_input, and so on.
_PREDICTED = ("label", "labels")
_TOP_K = ("top_k", "top_1_label")


def _refuse_predictions_as_gold(df: pd.DataFrame, label_column: str, source: str) -> None:
    """Raise ``DataError`` when ``label_column`` of ``df`` is a ``predict --output`` file's prediction.

    ``eval`` of such a file scored the model against its own predictions (100% for a 67% model) and
    ``train --from`` trained on its guesses, without a word. The labels it was given, where the
    input had some, are its shortest ``<name>_input`` column (a re-scored file's longer ones are
    earlier predictions), which is read as any column.
    """
    if label_column not in _PREDICTED or not any(marker in df.columns for marker in _TOP_K):
        return
    given = f"{label_column}_input"
    advice = (
        f"{given!r} the labels it was given: set data.label_column={given} to read those"
        if given in df.columns
        else "it holds no labels you gave (its input had no label column): evaluate or train on a "
        "labelled file"
    )
    raise DataError(
        f"{source}: a predictions file (tunelab predict --output): its {label_column!r} column holds "
        f"the model's predictions and {advice}"
    )


def extract(
    df: pd.DataFrame,
    cfg: DataConfig,
    *,
    source: str,
    label_kind: LabelKind | None,
    text_column: str | None = None,
    has_header_row: bool = False,
    rows_are: str = "",
) -> Extracted:
    """Take the configured columns from ``df``, drop or reject empty texts, split labels.

    Args:
        df: a table from ``read_table`` (string cells, index = row numbers).
        cfg: which columns to use and the empty-text policy.
        source: the file, as named in messages.
        label_kind: ``one`` label or ``many`` per row (the task says which); None to ignore labels.
        text_column: the text column to use instead of ``cfg.text_column``.
        has_header_row: the columns came from a header row, so a missing column may mean that
            the file has none; the message then says how to name the columns.
        rows_are: what a row number counts in this file (``row_convention``), said in messages
            that name a row: people count lines differently.

    Raises:
        ConfigError: two of the columns read are one (the label column is the text column, say).
        DataError: a column is missing, a text or label cell is empty or of the wrong kind, or no
            rows are left; single-label cells that look like several labels each.
    """
    text_col = text_column or cfg.text_column
    # The run's config refuses these too (RunConfig); an eval file's data.* options reach only here.
    clashes = column_clashes(cfg, labels=label_kind is not None, text_column=text_col)
    if clashes:
        raise ConfigError(f"{source}: " + "; ".join(f"data.{problem}" for problem in clashes))
    hint = " (if the file has no header row, set data.header: false and data.column_names)"
    wanted = [(text_col, "data.text_column")]
    if cfg.text_pair_column:
        wanted.append((cfg.text_pair_column, "data.text_pair_column"))
    if label_kind is not None:
        wanted.append((cfg.label_column, "data.label_column"))
    missing = [(column, setting) for column, setting in wanted if column not in df.columns]
    if missing:
        # Every wrong name at once: fixing one and running again to meet the next costs a round trip.
        names = " or ".join(repr(column) for column, _ in missing)
        settings = " and ".join(setting for _, setting in missing)
        some = "one of them" if len(missing) == 1 else "them"
        raise DataError(
            f"{source}: no column {names} (columns: {describe_columns(df)}); set {settings} "
            f"to {some}{hint if has_header_row else ''}"
        )
    if label_kind is not None:
        _refuse_predictions_as_gold(df, cfg.label_column, source)
    note = f" ({rows_are})" if rows_are else ""

    texts = _text_column(df, text_col, source)
    # No visible character, not just "" after strip: a text of zero-width spaces (U+200B, a BOM) was
    # kept, trained on and predicted as the empty text it tokenises to. It stays as read when kept.
    empty = ~texts.map(has_visible_text).astype(bool)
    if cfg.text_pair_column:
        pairs = _text_column(df, cfg.text_pair_column, source)
        empty |= ~pairs.map(has_visible_text).astype(bool)
    what = "empty text" if not cfg.text_pair_column else "empty text or text pair"
    notes: list[str] = []
    n_empty = int(empty.sum())
    if n_empty:
        first = int(empty[empty].index[0])
        if cfg.empty_text == "error":
            raise DataError(
                f"{source} row {first}: {what} ({_rows(n_empty)} in all); fill them in, or set "
                f"data.empty_text: drop to skip such rows{note}"
            )
        if n_empty == len(df):
            raise DataError(f"{source}: every row has {what} in column {text_col!r}; check data.text_column")
        notes.append(f"{source}: dropped {_rows(n_empty)} with {what} (first: row {first})")
        df = df[~empty]
        texts = texts[~empty]

    labels = None
    if label_kind is not None:
        labels = _labels(df[cfg.label_column], cfg, source, label_kind, note)
    return Extracted(
        texts=texts.tolist(),
        pairs=pairs[~empty].tolist() if cfg.text_pair_column else None,
        labels=labels,
        rows=[int(i) for i in df.index],
        frame=df,
        notes=notes,
    )


def describe_columns(df: pd.DataFrame) -> str:
    """The column names, shortened, for a message that asks the user to pick one."""
    names = [c if len(c) <= 40 else c[:37] + "..." for c in map(str, df.columns)]
    more = f", ... ({len(names)} in all)" if len(names) > _MAX_COLUMNS_SHOWN else ""
    return ", ".join(repr(n) for n in names[:_MAX_COLUMNS_SHOWN]) + more


def _text_column(df: pd.DataFrame, column: str, source: str) -> pd.Series:
    values = df[column]
    bad = values.map(lambda v: not isinstance(v, str))
    if bad.any():
        row = int(bad[bad].index[0])
        raise DataError(
            f"{source} row {row}: column {column!r} holds a {type(values.loc[row]).__name__}, not a text; "
            "check data.text_column"
        )
    # Stripped: an all-whitespace text is empty, and a classifier trains on and reads texts without
    # surrounding whitespace (the data fingerprint a resume checks is of these texts). Callers that
    # need the text as given (NER predictions, whose offsets point into it) read it from
    # ``Extracted.frame``.
    return values.map(str.strip)


def _labels(
    values: pd.Series, cfg: DataConfig, source: str, kind: LabelKind, note: str
) -> list[str] | list[list[str]]:
    column = values.name
    if kind == "many":
        return [_split_labels(v, cfg.label_delimiter) for v in values]
    out: list[str] = []
    missing: list[int] = []
    for row, value in values.items():
        if isinstance(value, list):
            raise DataError(
                f"{source} row {row}: column {column!r} holds a list of labels; set data.task: "
                f"multi_label for multi-label data{note}"
            )
        name = label_name(value)
        if not name:
            missing.append(int(row))
        out.append(name)
    if missing:
        raise DataError(
            f"{source} row {missing[0]}: empty label in column {column!r} ({_rows(len(missing))} in all); "
            f"fill in the label or remove the row{note}"
        )
    rows = [int(row) for row in values.index]
    _refuse_combined_labels(out, rows, cfg.label_delimiter, column, source, note)
    return out


def _refuse_combined_labels(
    names: list[str], rows: list[int], delimiter: str, column: object, source: str, note: str
) -> None:
    """Raise ``DataError`` when single-label cells look like several labels each (multi-label data).

    Multi-label data read without ``data.task: multi_label`` was taken for single-label, each
    combination of labels its own class ("sports|weather", "['a', 'b']"), without a word; a JSON list
    is refused in ``_labels``. A cell is *combined* when it is written as a list (``_listed``) or its
    ``data.label_delimiter`` splits it into two or more names. Such a cell alone proves nothing (a
    class may be named "a|b", a taxonomy path "electronics|phones"), so the column is refused only
    when the data says the parts are labels:

    - a combined cell's parts are all labels that rows also hold alone ("sports", "weather" and
      "sports|weather"); or
    - more than half of the rows hold combined cells and either the parts recur: more than half of
      the distinct parts that are not numbers are in two or more distinct cells ("a|b", "b|c",
      "a|c"; a taxonomy's leaves are each under one root, so its paths do not pass), or the cells
      are lists of quoted names or empty (pandas' ``to_csv`` of a list column, "['a']", "[]": no one
      names a class so). Numbers are left out: "[0, 10]", "[10, 20]" are more likely ranges.

    The message names the first combined cell that qualifies.
    """
    combined: dict[str, list[str]] = {}  # a combined cell's name -> its parts
    listed: set[str] = set()
    for name in dict.fromkeys(names):
        items = _listed(name)
        parts = _split_labels(name, delimiter)
        if items is not None:
            listed.add(name)
            combined[name] = parts
        elif len(parts) >= 2:
            combined[name] = parts
    if not combined:
        return
    alone = {name for name in names if name not in combined}
    why = ""
    found = next((name for name, parts in combined.items() if parts and set(parts) <= alone), None)
    if found is not None:
        shown = " and ".join(repr(p) for p in combined[found])
        why = f"{shown} {'are labels' if len(combined[found]) > 1 else 'is a label'} of other rows"
    elif 2 * sum(name in combined for name in names) > len(names):
        cells: dict[str, int] = {}  # a part that is not a number -> the combined cells holding it
        for parts in combined.values():
            for part in set(parts):
                if not _is_number(part):
                    cells[part] = cells.get(part, 0) + 1
        recur = 2 * sum(n >= 2 for n in cells.values()) > len(cells) > 0
        # A list of quoted names or an empty one ("[]"): a list, not a range of numbers.
        quoted = {name for name in listed if not combined[name] or "'" in name or '"' in name}
        if recur:
            found, why = next(n for n in names if n in combined), "most rows hold several labels that recur"
        elif 2 * sum(name in quoted for name in names) > len(names):
            first = [n for n in names if n in quoted]
            found = next((n for n in first if combined[n]), first[0])  # "['a']" rather than "[]"
            why = "most rows hold a list of labels"
    if found is None:
        return
    row = rows[names.index(found)]
    # Single-label data reads no delimiter, so another one is the way out for names that hold it.
    what, escape = (
        ("a list of labels", "")
        if found in listed
        else ("several labels", " (or, if each is one label, data.label_delimiter to a character they lack)")
    )
    raise DataError(
        f"{source} row {row}: column {column!r} holds {found!r}, {what} ({why}); set data.task: "
        f"multi_label for multi-label data{escape}{note}"
    )


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def _is_number(text: str) -> bool:
    """``10``, ``-0.5``: a range's bound ("[0, 10]") rather than a label's name."""
    return _NUMBER.fullmatch(text) is not None


def _split_labels(value: str | list[str], delimiter: str) -> list[str]:
    """One multi-label cell -> its label names; an empty cell or list means no label."""
    parts = value if isinstance(value, list) else _listed(value) or value.split(delimiter)
    names = (label_name(p) for p in parts)
    return list(dict.fromkeys(n for n in names if n))  # dedupe, keep order


def label_name(value: str) -> str:
    """A label cell's name: stripped and in Unicode NFC, so that "café" typed on one system and
    "cafe" + a combining accent (NFD: macOS file names, some exports) on another, which print the
    same, are one label and not "an unknown label" in the dev file. NFC of an NFC name is itself."""
    return unicodedata.normalize("NFC", value.strip())


def _listed(value: str) -> list[str] | None:
    """A cell written as a list (``['a', 'b']`` or ``["a", "b"]``: pandas' to_csv of a list column),
    its items; else None. Each distinct list text was taken for one label ("['a', 'b']")."""
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    try:
        items = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None  # "[urgent]": a label that happens to have brackets
    if not isinstance(items, list) or not all(isinstance(i, str | int) for i in items):
        return None
    return [str(i) for i in items] or [""]


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"
