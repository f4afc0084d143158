"""Read a recommender's items and interactions (CSV, JSONL or Parquet) into one ``Dataset``.

An item's text is what the encoder reads: its text fields joined as
``"Toy Story (1995). genres: Adventure, Animation. tags: pixar, fun"`` (the first field bare, the
others named), with ``extra_text`` sources (MovieLens' users' tags) appended the same way.
Interactions naming an item the items file lacks are counted and reported with examples, then
left out: they cannot be ranked, and a silent drop would hide a wrong id column.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tunelab.apps.recommend.cells import is_blank, text_or_blank
from tunelab.apps.recommend.config import ExtraText, ItemsConfig, RecommendConfig
from tunelab.atomic import not_a_file
from tunelab.data.scripts import has_visible_text
from tunelab.data.tables import (
    SCAN_ERRORS,
    JsonArrayError,
    first_line_is_json,
    header_as_written,
    json_array_values,
    maybe_renamed,
    open_text_bytes,
    record_lines,
    record_start_line,
    refuse_repeated_names,
    sniff_separator,
)
from tunelab.errors import JSON_ERRORS, DataError, json_problem
from tunelab.serve.inputs import EPOCH_SECONDS_MAX, check_epoch_number

#: How many unknown item ids the report (and the CLI) show.
EXAMPLES = 5


@dataclass
class Dataset:
    """Items and interactions, cleaned and joined.

    Attributes:
        items: one row per item: ``item_id`` (str), ``text`` (str), and the text fields as read.
        interactions: ``user_id`` (str), ``item_id`` (str), ``time`` (float, epoch seconds),
            ``positive`` (bool), and ``rating`` (float) / ``event`` (str) when configured; sorted
            by time, then user, then item.
        report: counts for the build report: items, rows, positives, users, unknown_items
            (rows, distinct, examples), extra_text.
        dated: the extra text that names its users and times (``DatedValues``), or None.
    """

    items: pd.DataFrame
    interactions: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)
    dated: DatedValues | None = None


@dataclass
class DatedValues:
    """Extra-text values that say who wrote them and when (``user_column``, ``time_column``), so
    that ``build`` can fit without those written after their author's held-out interactions
    (``texts_before``).

    Attributes:
        rows: per extra-text source: its rows (``item_id``, ``value``, ``user_id``, ``time``).
        fields: each item's text fields as read, the parts ``texts_before`` composes again
            (``Dataset.items`` holds the composed ``text``, which replaces a field called ``text``,
            and the ids, which replace one called ``item_id``), in the items' order.
    """

    rows: dict[str, pd.DataFrame]
    fields: pd.DataFrame


def load_dataset(cfg: RecommendConfig, *, progress: bool = False) -> Dataset:
    """Read the items and interactions files of ``cfg``.

    Raises:
        DataError: a file is missing or unreadable, a column is missing, an id or time is bad, an
            item's text is empty, or no interaction is left; the message names the file and row.
    """
    items, report, dated = read_items(cfg.items)
    interactions, inter_report = read_interactions(cfg, set(items["item_id"]))
    report.update(inter_report)
    return Dataset(items=items, interactions=interactions, report=report, dated=dated)


# -- reading tables ---------------------------------------------------------------------------------


def read_table(path: str | Path, fmt: str, what: str) -> tuple[pd.DataFrame, list[str]]:
    """A file as a DataFrame of strings (CSV) or JSON/Parquet values, and each row's place in the file.

    Files are taken as the training reader (``tunelab.data.readers``) takes them: a sniffed
    separator, header names stripped and none repeated, a JSON array as well as JSON lines, a
    Parquet file's named index as its column. Its cells stay typed here (JSON's ``true``, Parquet
    timestamps): the times and ratings are checked by type, which all-text cells would hide.

    The places go into error messages: ``row 8`` for the CSV record that starts on line 8 (the
    header is line 1; a quoted text may run over lines), or ``record 3`` (the third data record)
    where its line cannot be told; ``line 3`` of a JSONL file; ``item 2`` of a JSON array; ``row 2``
    of a Parquet table (1-based).
    """
    p = Path(path)
    if not p.is_file():
        # not_a_file: a folder, a pipe, or a name this locale cannot encode (that file is there)
        raise DataError(f"{p}: {not_a_file(p, f'{what} file') or f'{what} file not found'}")
    try:
        if fmt == "csv":
            frame, places = _read_csv(p, what)
        elif fmt == "parquet":
            frame = _read_parquet(p)
            places = [f"row {i + 1}" for i in range(len(frame))]
        else:
            frame, places = _read_jsonl(p, what)
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(f"{p}: not UTF-8; save the {what} file as UTF-8") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{p}: not a readable {fmt.upper()} {what} file ({first})") from None
    return _named_once(p, frame), places


#: A BOM (Excel writes one) skipped, the rest read as UTF-8.
_CSV_ENCODING = "utf-8-sig"


def _read_csv(p: Path, what: str) -> tuple[pd.DataFrame, list[str]]:
    """A CSV with its separator sniffed as the training reader does: a ';' file (Excel in many
    locales) read as one column named ``item_id;title`` and failed as a missing column."""
    sep = sniff_separator(p, _CSV_ENCODING, ",") or ","
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            # index_col=False: rows one field longer than the header (trailing commas) made pandas
            # take the first column as the index, every column shifted one place without a word
            frame = pd.read_csv(
                p, sep=sep, dtype=str, keep_default_na=False, encoding=_CSV_ENCODING, index_col=False
            )
    except pd.errors.ParserError as exc:
        raise DataError(f"{p}: not a readable CSV {what} file ({_parse_problem(p, sep, exc)})") from None
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        _refuse_filled_extra_fields(p, sep, what)
    if maybe_renamed(frame.columns):
        # pandas renames a repeated name (title, title.1), and the first was used without a word
        refuse_repeated_names(p, header_as_written(p, sep, _CSV_ENCODING))
    return frame, _csv_places(p, sep, len(frame))


def _refuse_filled_extra_fields(p: Path, sep: str, what: str) -> None:
    """Raise ``DataError`` naming the first record with a filled field past the header's; empty ones
    (a spreadsheet's trailing separators) hold nothing and are read past, as the support bot's
    knowledge files are. pandas only warned that it dropped them."""
    header: list[str] | None = None
    try:
        for line, row in record_lines(p, sep, _CSV_ENCODING):
            if not row:
                continue
            if header is None:
                header = row
            elif len(row) > len(header) and any(field.strip() for field in row[len(header) :]):
                raise DataError(
                    f"{p}: not a readable CSV {what} file (line {line} has {len(row)} fields where the "
                    f"header has {len(header)}; quote a text that holds {sep!r})"
                )
    except SCAN_ERRORS:
        return


def _csv_places(p: Path, sep: str, rows: int) -> list[str]:
    """``row N`` with N the line each data record starts on: pandas counts records, and after a
    quoted text over three lines its row numbers were two short of the line an editor shows."""
    try:
        plain = _line_per_record(p, rows)
    except SCAN_ERRORS:
        plain = False
    if plain:
        return [f"row {i + 2}" for i in range(rows)]
    starts = _record_starts(p, sep)
    if len(starts) == rows + 1:  # the header's line, then one per data row
        return [f"row {line}" for line in starts[1:]]
    return [f"record {i + 1}" for i in range(rows)]  # a .zip, or records counted otherwise


def _line_per_record(p: Path, rows: int) -> bool:
    """Whether each line of the file is one record, the header and ``rows`` data rows (no quotes,
    so no text over lines; no blank line; no lone carriage return): a ratings file of millions of
    rows is told so at the speed of bytes.count (0.1 s for 2 million rows; the csv module: 3 s)."""
    stream = open_text_bytes(p)
    if stream is None:
        return False
    lines, last, cr = 0, b"", b""
    with stream:
        while chunk := stream.read(1 << 20):
            text = cr + chunk  # a \r\n may be cut between chunks
            cr = b"\r" if text.endswith(b"\r") else b""
            body = text[: len(text) - len(cr)]
            if b'"' in chunk or body.count(b"\r") != body.count(b"\r\n"):
                return False
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return not cr and lines + (last not in (b"", b"\n")) == rows + 1


def _record_starts(p: Path, sep: str) -> list[int]:
    """The line each record pandas reads starts on, quotes honoured; [] when it cannot be read so."""
    try:
        records = record_lines(p, sep, _CSV_ENCODING)
        return [line for line, row in records if not _blank_record(row, sep)]
    except SCAN_ERRORS:
        return []


def _blank_record(row: list[str], sep: str) -> bool:
    """A line pandas skips: empty, or only spaces and tabs (when the separator is neither)."""
    return not row or (len(row) == 1 and not row[0].strip(" \t".replace(sep, "")))


def _parse_problem(p: Path, sep: str, exc: pd.errors.ParserError) -> str:
    """pandas' parser error with the file line the bad record starts on (its "line" counts
    records, a quoted text over lines being one)."""
    detail = " ".join(str(exc).split())
    bad = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", detail)
    if bad is None:
        return detail
    expected, record, saw = int(bad[1]), int(bad[2]), int(bad[3])
    line = record_start_line(p, sep, _CSV_ENCODING, record, saw)
    where = f"line {line}" if line is not None else f"record {record}"
    return f"{where} has {saw} fields where the header has {expected}; quote a text that holds {sep!r}"


def _read_parquet(p: Path) -> pd.DataFrame:
    """A Parquet table with a named index (``df.set_index("item_id").to_parquet()``) given back as
    the column it was: kept as the index, the file had "no column item_id". An unnamed index (a
    filtered frame's row labels) is no data; nor is a name a column has already."""
    frame = pd.read_parquet(p)
    named = [n for n in frame.index.names if n is not None and n not in frame.columns]
    return frame.reset_index(level=named) if named else frame


def _named_once(p: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """The columns' names stripped (``item_id, title`` names ``title``), none used twice: with a
    name twice, ``frame[name]`` is two columns, or pandas' rename left the second unread."""
    names = [str(c) for c in frame.columns]
    refuse_repeated_names(p, names)
    frame.columns = [n.strip() for n in names]
    return frame


def _read_jsonl(p: Path, what: str) -> tuple[pd.DataFrame, list[str]]:
    text = p.read_text(encoding="utf-8-sig")
    array = _read_json_array(p, text, what)
    if array is not None:
        return array
    records, places = [], []
    # split("\n"), not splitlines(): JSON strings may hold U+2028, U+0085 or a form feed raw, which
    # splitlines() also breaks at (a valid record refused, and every later line number off).
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except JSON_ERRORS as exc:
            raise DataError(f"{p}: line {line_no} is not JSON ({json_problem(exc)})") from None
        if not isinstance(record, dict):
            raise DataError(f"{p}: line {line_no} is not a JSON object (one {what} record per line)")
        records.append(record)
        places.append(f"line {line_no}")
    return pd.DataFrame.from_records(records), places


def _read_json_array(p: Path, text: str, what: str) -> tuple[pd.DataFrame, list[str]] | None:
    """A file of one JSON array of records (``json.dump(rows, f)``, pandas' ``orient="records"``),
    as the training reader takes it; read by lines, its ``[`` was "not JSON". None when ``text``
    is no array: JSON lines, or lines that are arrays (the line reader names the line)."""
    try:
        records = json_array_values(text)
    except JsonArrayError as exc:
        if first_line_is_json(text):
            return None
        where = f" on line {exc.line}" if exc.line is not None else ""
        raise DataError(
            f"{p}: a JSON array that is not valid JSON{where} ({exc.problem}); fix it, or write "
            f"one {what} record per line"
        ) from None
    if records is None:
        return None
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DataError(
                f"{p}: item {number} of the JSON array is not a JSON object (one {what} record each)"
            )
    return pd.DataFrame.from_records(records), [f"item {n}" for n in range(1, len(records) + 1)]


def _need_columns(frame: pd.DataFrame, path: str, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(f"{path}: the {what} file has no column {', '.join(missing)} (it has {have})")


def _ids(values: pd.Series, path: str, places: list[str], column: str) -> pd.Series:
    """Ids as stripped strings, a whole number written as a float its integer (``id_text``)."""
    ids = values.map(id_text)
    empty = np.flatnonzero((ids == "").to_numpy())
    if len(empty):
        raise DataError(f"{path}: {places[empty[0]]}: empty {column}; every row needs one")
    return ids


#: A whole number written by a float column: pandas writes an integer id column with a gap as 1.0.
_WHOLE_FLOAT = re.compile(r"[+-]?\d+\.0+")


def id_text(value: Any) -> str:
    """An id as every reader takes it (files of each format, events, rankings): stripped text, and
    a whole number written as a float (7.0, or "7.0" in a CSV cell) its integer, "7". One rule: a
    CSV's "7.0" stayed "7.0" while JSONL, Parquet and the events route read 7.0 as "7", so CSV
    interactions missed Parquet items, and an event for user 7 made a user apart from the built
    "7.0". Other text ("007", "1.5") is kept as it is. ``""`` for no value."""
    if is_blank(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return str(int(text.split(".")[0])) if _WHOLE_FLOAT.fullmatch(text) else text


# -- items ------------------------------------------------------------------------------------------


def values_of(value: Any, separator: str | None) -> list[str]:
    """A cell's values: a list (JSON, Parquet) or a string split on ``separator``; blanks dropped,
    those with no visible character too (a title of only U+200B made an item's text of it, embedded
    and ranked as the empty text it is)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, list | tuple | np.ndarray):
        parts = [_text(v) for v in value if v is not None]
    else:
        text = _text(value)
        parts = text.split(separator) if separator else [text]
    return [p.strip() for p in parts if has_visible_text(p)]


def _text(value: Any) -> str:
    """A whole-number float as its integer: a Parquet int column with a gap reads as float64, and
    the item text said "year: 1999.0" (``id_text`` reads 7.0 as "7" too)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def compose_text(cfg: ItemsConfig, fields: Mapping[str, Any]) -> str:
    """An item's text from its fields: ``"title. genres: a, b. tags: x, y"``.

    ``fields`` holds the text fields and, by name, the extra-text values (a list or a string).
    """
    parts = []
    for i, name in enumerate(cfg.text_fields):
        values = values_of(fields.get(name), cfg.list_separators.get(name))
        if values:
            parts.append(", ".join(values) if i == 0 else f"{name}: {', '.join(values)}")
    for extra in cfg.extra_text:
        values = values_of(fields.get(extra.name), ",")  # a string given to add_item: "a, b"
        # as the build composes them (lowercased, at most max_values; its values come counted and
        # cut already): an item added live read "Pixar, Funny, Kids" beside built "pixar, funny"
        if extra.lowercase:
            values = [v.lower() for v in values]
        values = list(dict.fromkeys(values))[: extra.max_values]
        if values:
            parts.append(f"{extra.name}: {', '.join(values)}")
    return ". ".join(p.rstrip(". ") for p in parts)


def read_items(cfg: ItemsConfig) -> tuple[pd.DataFrame, dict[str, Any], DatedValues | None]:
    """Items with their text; the report part about them; the dated extra-text values.

    Raises:
        DataError: see ``load_dataset``; a duplicate id names both rows.
    """
    frame, places = read_table(cfg.path, cfg.format, "items")
    _need_columns(frame, cfg.path, [cfg.id_column, *cfg.text_fields], "items")
    if frame.empty:
        raise DataError(f"{cfg.path}: the items file has no rows")
    ids = _ids(frame[cfg.id_column], cfg.path, places, cfg.id_column)
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup & (ids == ids[dup].iloc[0]).to_numpy())
        raise DataError(
            f"{cfg.path}: item {ids.iloc[rows[0]]!r} appears twice ({places[rows[0]]} and "
            f"{places[rows[1]]}); item ids must be unique"
        )
    # The text is composed from the fields apart from the ids: a text field may be the id column
    # itself or one named item_id (a legacy code beside the id column), and written over the ids
    # it made every interaction name an unknown item.
    parts = pd.DataFrame({name: frame[name].to_numpy() for name in cfg.text_fields})
    fields = parts.copy()  # as read, before the extra text is added
    report: dict[str, Any] = {"items": len(parts)}
    dated: dict[str, pd.DataFrame] = {}
    for extra in cfg.extra_text:
        table, counts = read_extra_text(extra, set(ids))
        parts[extra.name] = _per_item(ids, top_values(table, extra.max_values))
        report.setdefault("extra_text", {})[extra.name] = counts
        if extra.user_column is not None:
            dated[extra.name] = table
    texts = [compose_text(cfg, row) for row in parts.to_dict("records")]
    items = parts.drop(columns="item_id", errors="ignore")  # the ids win over a field of that name
    items.insert(0, "item_id", ids.to_numpy())
    empty = [i for i, t in enumerate(texts) if not has_visible_text(t)]
    if empty:
        i = empty[0]
        more = f" ({len(empty) - 1} more such rows)" if len(empty) > 1 else ""
        raise DataError(
            f"{cfg.path}: {places[i]} (item {items['item_id'].iloc[i]!r}): empty text in "
            f"{', '.join(cfg.text_fields)}{more}; fill one of them or drop the row"
        )
    items["text"] = texts
    return items, report, DatedValues(dated, fields) if dated else None


def _per_item(ids: pd.Series, values: dict[str, list[str]]) -> np.ndarray:
    """Each id's values, by position (a Parquet file's own index does not align them)."""
    return pd.Series([values.get(i, []) for i in ids], dtype=object).to_numpy()


def read_extra_text(extra: ExtraText, known: set[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows of an extra-text file on known items (``item_id``, ``value``, and ``user_id`` and
    ``time`` when the source names them), in file order, and counts for the report.

    Who and when are checked only on the rows kept: a bad row on an unknown item is counted, as
    any row on an unknown item is, and does not stop the build.
    """
    what = f"{extra.name} (extra_text)"
    frame, places = read_table(extra.path, extra.format, what)
    dated = [extra.user_column, extra.time_column] if extra.user_column is not None else []
    _need_columns(frame, extra.path, [extra.id_column, extra.field, *dated], what)
    ids = _ids(frame[extra.id_column], extra.path, places, extra.id_column)
    values = frame[extra.field].map(text_or_blank)
    if extra.lowercase:
        values = values.str.lower()
    filled = (values != "").to_numpy()
    on_known = ids.isin(known).to_numpy()
    keep = np.flatnonzero(filled & on_known)
    table = pd.DataFrame({"item_id": ids.iloc[keep].to_numpy(), "value": values.iloc[keep].to_numpy()})
    if extra.user_column is not None and extra.time_column is not None:
        kept, where = frame.iloc[keep], [places[i] for i in keep]
        table["user_id"] = _ids(kept[extra.user_column], extra.path, where, extra.user_column).to_numpy()
        table["time"] = _times(kept[extra.time_column], extra.path, where, extra.time_column, what="value")
    unknown = np.flatnonzero(filled & ~on_known)
    counts = {
        "rows": len(frame),
        "items_with_values": int(table["item_id"].nunique()),
        "rows_unknown_item": len(unknown),
        "unknown_items": _unknown_report(
            pd.DataFrame({"item_id": ids.iloc[unknown].to_numpy(), "_place": [places[i] for i in unknown]})
        ),
    }
    return table, counts


def top_values(table: pd.DataFrame, max_values: int) -> dict[str, list[str]]:
    """``item id -> its max_values most frequent values``, ties in the order first seen."""
    table = table[["item_id", "value"]].assign(order=np.arange(len(table)))
    grouped = table.groupby(["item_id", "value"], sort=False).agg(n=("order", "size"), first=("order", "min"))
    grouped = grouped.reset_index().sort_values(["item_id", "n", "first"], ascending=[True, False, True])
    return {
        item: group["value"].head(max_values).tolist()
        for item, group in grouped.groupby("item_id", sort=False)
    }


def written_before(users: pd.Series, times: pd.Series, cutoff: pd.Series) -> np.ndarray:
    """Which rows were written before their author's ``cutoff`` (``user_id -> epoch seconds``;
    an author without one: every row)."""
    limit = users.astype(str).map(cutoff).astype(float)
    return (limit.isna() | (times.astype(float) < limit)).to_numpy()


def texts_before(cfg: ItemsConfig, ds: Dataset, cutoff: pd.Series) -> tuple[list[str], int]:
    """Each item's text without the dated extra-text values written at or after their author's
    ``cutoff`` (``user_id -> epoch seconds``; users not in it keep every value), and how many
    rows were left out. Without dated values (``ds.dated`` None): the texts as they are.

    Why: a value such as a tag is an interaction. Fitted on text that holds a user's tag on the
    item they went on to like in validation, the text model and the ranker learn a match that no
    real recommendation has before the user acts (MovieLens small: 69% of the tag rows are dated
    after their author's first held-out positive).
    """
    if ds.dated is None:
        return ds.items["text"].tolist(), 0
    parts = ds.dated.fields.copy()
    left_out = 0
    for extra in cfg.extra_text:
        table = ds.dated.rows.get(extra.name)
        if table is None:  # an undated source: every value, as read_items counted them
            parts[extra.name] = ds.items[extra.name].to_numpy()
            continue
        keep = written_before(table["user_id"], table["time"], cutoff)
        left_out += int((~keep).sum())
        parts[extra.name] = _per_item(ds.items["item_id"], top_values(table[keep], extra.max_values))
    return [compose_text(cfg, row) for row in parts.to_dict("records")], left_out


# -- interactions -----------------------------------------------------------------------------------


def _times(
    values: pd.Series, path: str, places: list[str], column: str, what: str = "interaction"
) -> np.ndarray:
    """Epoch seconds from numbers (epoch seconds), ISO 8601 strings or a datetime column (Parquet's
    timestamps; naive ones are taken as UTC, as naive ISO strings are).

    Strings are read as ISO 8601 only, as the HTTP events are: guessed row by row ("mixed"), a
    dd/mm/yyyy file read 04/03/2024 as April 3 and 13/03/2024 as March 13 without a word. Eight
    digits that read as a date (20240315) and booleans are refused, as the monitor refuses them:
    as epoch seconds they are moments in 1970.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        # to_numeric would give the column's own unit (microseconds, nanoseconds), not seconds
        stamps = pd.to_datetime(values, utc=True)
        if stamps.isna().any():
            i = int(np.flatnonzero(stamps.isna().to_numpy())[0])
            raise DataError(f"{path}: {places[i]}: {column} is empty; every {what} needs a time")
        epoch = ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)
        return _not_ahead(epoch, values, path, places, column)
    blank = values.map(is_blank).to_numpy(dtype=bool)
    if blank.any():
        i = int(np.flatnonzero(blank)[0])
        raise DataError(f"{path}: {places[i]}: {column} is empty; every {what} needs a time")
    # A JSON object or list ({"$date": ...}, MongoDB's export) made pandas' date cache fail as
    # "unexpected TypeError: unhashable type" on files of 50 rows or more; an integer past a float's
    # range failed in to_numeric as OverflowError. Only an object or boolean column can hold those:
    # a numeric one is not walked row by row in Python.
    checked = values if values.dtype == object or pd.api.types.is_bool_dtype(values) else ()
    for i, value in enumerate(checked):
        if (
            isinstance(value, dict | list | tuple | bool | np.bool_)  # true is no time (nor 1970)
            or (isinstance(value, int) and abs(value) >= 2**63)
        ):
            raise DataError(
                f"{path}: {places[i]}: {column} {value!r} is not a time; use epoch seconds or ISO 8601"
            )
    # float64: a nullable integer column (Parquet's Int64) compares to NA, which has no truth value
    numeric = pd.Series(
        pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan), index=values.index
    )
    # Epoch milliseconds (RetailRocket's, many event logs') read as seconds would date the catalog
    # 50,000 years ahead, and every live event, dated in seconds, would land before it.
    too_large = (numeric.abs() >= EPOCH_SECONDS_MAX).to_numpy()
    if too_large.any():
        i = int(np.flatnonzero(too_large)[0])
        raise DataError(
            f"{path}: {places[i]}: {column} {values.iloc[i]!r} is not epoch seconds "
            "(milliseconds? divide the column by 1000) nor ISO 8601"
        )
    _no_compact_dates(numeric, path, places, column)
    if numeric.notna().all():
        return _not_ahead(numeric.to_numpy(dtype=np.float64), values, path, places, column)
    parsed = pd.to_datetime(values.where(numeric.isna(), None), utc=True, errors="coerce", format="ISO8601")
    bad = numeric.isna() & parsed.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{path}: {places[i]}: {column} {values.iloc[i]!r} is not a time; use epoch seconds or ISO 8601"
        )
    seconds = parsed.map(lambda t: t.timestamp() if pd.notna(t) else np.nan).astype(np.float64)
    return _not_ahead(
        np.where(numeric.notna(), numeric, seconds).astype(np.float64), values, path, places, column
    )


def _no_compact_dates(numeric: pd.Series, path: str, places: list[str], column: str) -> None:
    """Refuse the first number that is eight digits reading as a date (the shared check), naming
    its row; only the few whole numbers in 1970-04..1973-03 are looked at one by one."""
    array = numeric.to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        suspect = np.flatnonzero((array >= 1e7) & (array < 1e8) & (array == np.floor(array)))
    for i in suspect:
        try:
            check_epoch_number(float(array[i]))
        except ValueError as exc:
            raise DataError(f"{path}: {places[i]}: {column}: {exc}") from None


# How far past the clock a time in a data file may be (clocks and time zones disagree a little).
MAX_AHEAD_S = 86_400.0


def _not_ahead(
    seconds: np.ndarray, values: pd.Series, path: str, places: list[str], column: str
) -> np.ndarray:
    """Refuse a time after tomorrow: the build dates the catalogue by its newest time, so one row
    dated 2100 (a placeholder, a typo) made every item as old as one never seen, and no live event
    could make one recent again; the live path already refuses such times."""
    ahead = seconds > time.time() + MAX_AHEAD_S
    if ahead.any():
        i = int(np.flatnonzero(ahead)[0])
        raise DataError(f"{path}: {places[i]}: {column} {values.iloc[i]!r} is in the future; fix the row")
    return seconds


def read_interactions(cfg: RecommendConfig, known: set[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Interactions on known items, with ``positive`` set by the rule; the report part about them."""
    icfg = cfg.interactions
    frame, places = read_table(icfg.path, icfg.format, "interactions")
    columns = [icfg.user_column, icfg.item_column, icfg.time_column]
    columns += [c for c in (icfg.rating_column, icfg.event_column) if c]
    _need_columns(frame, icfg.path, columns, "interactions")
    if frame.empty:
        raise DataError(f"{icfg.path}: the interactions file has no rows")
    out = pd.DataFrame(
        {
            "user_id": _ids(frame[icfg.user_column], icfg.path, places, icfg.user_column).to_numpy(),
            "item_id": _ids(frame[icfg.item_column], icfg.path, places, icfg.item_column).to_numpy(),
            "time": _times(frame[icfg.time_column], icfg.path, places, icfg.time_column),
        }
    )
    if icfg.rating_column:
        ratings = pd.to_numeric(frame[icfg.rating_column], errors="coerce")
        given = ~frame[icfg.rating_column].map(is_blank).astype(bool)
        bad = np.flatnonzero((ratings.isna() & given).to_numpy())
        if len(bad):
            i = bad[0]
            raise DataError(
                f"{icfg.path}: {places[i]}: {icfg.rating_column} {frame[icfg.rating_column].iloc[i]!r} "
                "is not a number"
            )
        out["rating"] = ratings.to_numpy(dtype=np.float64)
    if icfg.event_column:
        out["event"] = frame[icfg.event_column].map(text_or_blank).to_numpy()
    source = icfg.rule_source()
    out["positive"] = icfg.rule.apply(out[source] if source else out["user_id"])
    out["_place"] = places
    unknown_mask = ~out["item_id"].isin(known)
    report: dict[str, Any] = {"rows": len(out), "unknown_items": _unknown_report(out[unknown_mask])}
    out = out[~unknown_mask]
    if out.empty:
        raise DataError(
            f"{icfg.path}: no interaction names an item of {cfg.items.path} (e.g. "
            f"{report['unknown_items']['examples'][0]['item_id']!r}); are id_column and item_column right?"
        )
    if not out["positive"].any():
        raise DataError(
            f"{icfg.path}: the positive rule {icfg.positive!r} matches no interaction; check the rule"
        )
    out = out.drop(columns="_place").sort_values(["time", "user_id", "item_id"], kind="stable")
    out = out.reset_index(drop=True)
    report.update(
        {
            "interactions": len(out),
            "positives": int(out["positive"].sum()),
            "users": int(out["user_id"].nunique()),
            "items_with_interactions": int(out["item_id"].nunique()),
            "positive_rule": icfg.positive,
            "dropped": report["unknown_items"]["rows"],
        }
    )
    return out, report


def _unknown_report(rows: pd.DataFrame) -> dict[str, Any]:
    """How many rows name unknown items, and the first few ids with where they are."""
    examples = []
    for item_id, group in rows.groupby("item_id", sort=False):
        examples.append({"item_id": item_id, "rows": len(group), "first": group["_place"].iloc[0]})
        if len(examples) >= EXAMPLES:
            break
    return {"rows": len(rows), "distinct": int(rows["item_id"].nunique()), "examples": examples}
