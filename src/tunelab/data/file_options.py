"""How to read a file that is not one of a run's own: its own options, detected or given.

A run records how its training files were read (Financial PhraseBank: separator ``@``, no
header, Latin-1). Those options describe those files, not the run: forcing them onto the next
file (an ordinary ``id,text`` CSV given to ``tunelab predict``) reads its header as a text and
each row as one unsplit string, with no error. So ``eval`` and ``predict`` read a new file with
options detected from the file itself, or given as ``data.*=value`` overrides, and keep only the
run's column names (what the file must provide).

Detection, for each option not given:

- format: the extension (``.csv``, ``.tsv``, ``.txt``, ``.jsonl``, ``.parquet``, ...), else the
  content (``PAR1`` magic: Parquet; ``{`` or ``[``: JSON lines; anything else: delimited text);
- encoding: what ``data.encoding: auto`` takes (``detect_encoding``): UTF-16 with or without its
  byte-order mark, UTF-8 if the whole file decodes as UTF-8 (a file that does but for a few bytes
  is refused naming them), else the one of GB18030, Big5, EUC-KR, Shift-JIS and EUC-JP that reads
  as its script, else Windows-1252 when it has bytes 0x80-0x9F, else Latin-1 (which decodes any
  byte); a guess other than UTF-8 is logged so it can be fixed with ``data.encoding``;
- separator: sniffed from the first 64 KB (:mod:`tunelab.data.sniff`: ``csv.Sniffer``'s guess
  among ``, \\t ; | @`` when it splits every line into the same number, at least 2, of fields,
  else the first of the extension's usual one and those that does); else the usual one;
- header: a first row is a header unless ``data.column_names`` is given and the first row is not
  those names.

Compressed files (``.csv.gz``) are not inspected: UTF-8 and the extension's separator.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import logging
import re
from pathlib import Path
from typing import Any

from tunelab.config import DataConfig, _parse_value, apply_override, coerce_types, override_items
from tunelab.data.readers import (
    detect_encoding,
    detect_format,
    format_from_extension,
    is_json_array,
    separator_of,
)
from tunelab.data.sniff import cut_last_line, sniff_text
from tunelab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: How the file is laid out: never taken from the run, always the file's own.
READING_FIELDS = ("format", "separator", "encoding", "header", "column_names", "sheet")
#: What ``data.*=`` overrides may set on ``eval``, ``predict`` and ``export``: reading options, the columns to
#: take (defaults: the run's), how multi-label cells are split and what to do with empty texts.
FILE_FIELDS = (
    *READING_FIELDS,
    *("text_column", "text_pair_column", "label_column", "label_delimiter", "empty_text"),
    "tag_column",  # a CoNLL file's tag column: the file's own, as its columns are (NER)
    "token_column",  # ... and its word column (GermEval numbers its tokens in column 0)
)

#: The file fields whose value is text: a dict's text value for another field is read as an override's is.
_TEXT_FIELDS = frozenset(
    f.name
    for f in dataclasses.fields(DataConfig)
    if f.name in FILE_FIELDS and str(f.type).replace(" ", "").replace("|None", "") == "str"
)

_SAMPLE_BYTES = 64 * 1024
_COMPRESSED = (".gz", ".bz2", ".xz", ".zip", ".zst")


def parse_file_overrides(items: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """``["data.separator=@", "data.header=false"]`` -> ``{"separator": "@", "header": False}``.

    A dict (``{"separator": "@"}`` or ``{"data.separator": "@"}``) is checked the same way: its
    keys went unchecked into ``DataConfig``, which failed on a ``data.`` prefix or an unknown key
    with a TypeError. A text value for a field that is not text (``{"header": "false"}``) is read
    as an override's value is; a text field's value is kept as given (``{"separator": "\t"}``).

    Raises:
        ConfigError: an item is not ``data.FIELD=value`` (or a dict key not ``[data.]FIELD``),
            names a field that is not a reading option, or has a value of the wrong type; a bare
            text instead of a list (it was read one character at a time).
    """
    raw = _file_options_dict(items) if isinstance(items, dict) else _file_options_items(items)
    values, problems = coerce_types(DataConfig, raw, "data")
    if problems:
        raise ConfigError("; ".join(problems.values()))
    return values


def require_file_for_options(given: dict[str, Any], data: object) -> None:
    """Refuse reading options (``parse_file_overrides``'s result) given without a file to read.

    Raises:
        ConfigError: ``given`` is not empty and ``data`` is None.
    """
    if given and data is None:
        raise ConfigError("data.* reading options need a file to read: give --data FILE")


def _file_options_items(items: list[str] | None) -> dict[str, Any]:
    """The ``data.*=value`` items as ``{field: text}``, not yet typed (see ``parse_file_overrides``)."""
    raw: dict[str, Any] = {}
    example = "data.separator=@"
    for item in override_items(items, "options", example):
        key = item.partition("=")[0].strip()
        field = key.removeprefix("data.")
        if "=" not in item or not key.startswith("data.") or field not in FILE_FIELDS:
            raise ConfigError(
                f"{item!r}: give the file's reading options as data.FIELD=value with FIELD one of "
                f"{', '.join(FILE_FIELDS)} (e.g. data.separator=@ data.header=false)"
            )
        apply_override(raw, item)
    return raw.get("data", {})


def _file_options_dict(options: dict[Any, Any]) -> dict[str, Any]:
    """A dict of reading options (keys with or without ``data.``), checked as the ``data.*=``
    items are (see ``parse_file_overrides``); not yet typed."""
    raw: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in options.items():
        field = key.removeprefix("data.") if isinstance(key, str) else key
        if field not in FILE_FIELDS:
            unknown.append(repr(key))
        elif field in raw:  # {"separator": ",", "data.separator": "@"}: which one was meant?
            raise ConfigError(f"options: data.{field} given twice (with and without data.); give it once")
        else:
            raw[field] = value if field in _TEXT_FIELDS or not isinstance(value, str) else _parse_value(value)
    if unknown:
        raise ConfigError(
            f"options {', '.join(unknown)}: not a file reading option; use some of "
            f"{', '.join(FILE_FIELDS)} (with or without data., e.g. {{'separator': '@'}})"
        )
    return raw


def options_for_file(
    path: str | Path, run_cfg: DataConfig, overrides: list[str] | dict[str, Any] | None = None
) -> DataConfig:
    """The options to read ``path`` with: the run's column names, the file's own layout.

    A file that is one of the run's own (``data.train``/``dev``/``test``, same resolved path) is
    read as the run read it; any other file gets its layout detected (see the module docstring).
    ``overrides`` (``data.*=value`` items, or a dict, checked by ``parse_file_overrides``) win over both.

    Raises:
        ConfigError: a bad override, options that do not fit together (``header=false``
            without ``column_names``), or a ``text_pair_column`` that changes the run's kind of
            input (cleared for a pair run, set for a single-text run).
    """
    p = Path(path)
    given = parse_file_overrides(overrides)  # a dict too: its keys went unchecked into DataConfig
    _check_pair_column(run_cfg, given)
    values = dataclasses.asdict(run_cfg)
    if not _is_run_file(p, run_cfg):
        for name in READING_FIELDS:
            values[name] = DataConfig.__dataclass_fields__[name].default
        values.update(given)
        values.update(_detect(p, values, given))
    values.update(given)
    try:
        return DataConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def describe_reading(path: str | Path, cfg: DataConfig) -> str:
    """How ``path`` was read, for messages: ``CSV, first row as header, utf-8``."""
    try:
        fmt = detect_format(Path(path), cfg)
    except DataError:  # no telling extension: only a description
        fmt = cfg.format
    if fmt in ("jsonl", "parquet"):
        return f"JSON lines, {cfg.encoding}" if fmt == "jsonl" else "Parquet"
    if fmt == "excel":
        return f"Excel sheet {cfg.sheet!r}" if cfg.sheet else "Excel, first sheet"
    sep = separator_of(cfg) or ("\t" if fmt == "tsv" else ",")
    kind = "TSV" if sep == "\t" else "CSV" if sep == "," else f"text separated by {sep!r}"
    header = "first row as header" if cfg.header else "no header row"
    named = f", columns named [{','.join(cfg.column_names)}]" if cfg.column_names else ""
    return f"{kind}, {header}{named}, {cfg.encoding}"


def row_convention(path: str | Path, cfg: DataConfig) -> str:
    """What a row number means for ``path``, to say beside one: users count lines differently."""
    try:
        fmt = detect_format(Path(path), cfg)
    except DataError:  # no telling extension: only a description
        fmt = cfg.format
    if fmt == "jsonl":
        # A file of one JSON array ([{...}, {...}]) numbers its rows by item, not by line.
        return "rows are item numbers of the JSON array" if is_json_array(path) else "rows are line numbers"
    if fmt == "excel" and cfg.header:
        return "data rows counted from 1 below the header: Excel's row number is one more"
    if fmt == "parquet" or not cfg.header:
        return "rows counted from 1"
    return "data rows counted from 1, the header line not counted"


def _check_pair_column(run_cfg: DataConfig, given: dict[str, Any]) -> None:
    """A pair run's second column may be renamed (another file names it otherwise), not cleared;
    a single-text run takes none. Either change would feed the model the wrong kind of input and
    score or label it with no error (``Predictor.predict`` checks the same for texts it is given).
    """
    if "text_pair_column" not in given:
        return
    column, run_column = given["text_pair_column"], run_cfg.text_pair_column
    if run_column and not column:
        raise ConfigError(
            f"data.text_pair_column={column!r}: this run was trained on text pairs "
            f"(data.text_pair_column={run_column!r}); name the file's pair column instead "
            "(data.text_pair_column=COLUMN) or leave the option out"
        )
    if column and not run_column:
        raise ConfigError(
            f"data.text_pair_column={column!r}: this run classifies single texts; "
            "give no data.text_pair_column"
        )


def _is_run_file(path: Path, run_cfg: DataConfig) -> bool:
    """Whether ``path`` is one of the run's own data files (it is then read with the run's options).

    A name this process cannot resolve is not it: a run trained on ``dätä/train.csv`` under UTF-8,
    used where the locale is ASCII (``PYTHONUTF8=0 LC_ALL=C``), raised UnicodeEncodeError for every
    other file given to ``predict --input``, ``eval --data`` and ``export --data``.
    """
    try:
        target = path.resolve()
    except (OSError, ValueError):
        return False
    for name in (run_cfg.train, run_cfg.dev, run_cfg.test):
        if not name:
            continue
        try:
            if Path(name).resolve() == target:
                return True
        except (OSError, ValueError):  # ValueError: UnicodeEncodeError, or a NUL in the name
            continue
    return False


def _detect(path: Path, values: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Fill in the reading options not given, from the file's name and first bytes."""
    if not path.is_file() or path.suffix.lower() in _COMPRESSED:
        return {}  # read_table names a missing file; pandas decompresses with the defaults
    head = _head(path)
    out: dict[str, Any] = {}
    fmt = values["format"]
    if fmt == "auto":
        fmt = format_from_extension(path)
        if fmt is None:  # no telling extension: look at the content
            fmt = out["format"] = _format_from_content(head)
    if fmt == "excel" and "header" not in given and given.get("column_names"):
        # The first sheet row against the names given, as for text files below: without this a
        # headerless sheet lost its first data row to them.
        first = _first_sheet_row(path, given.get("sheet", values.get("sheet")))
        if first is not None:
            names = [str(n).strip().lower() for n in given["column_names"]]
            out["header"] = [str(c).strip().lower() for c in first] == names
    if fmt in ("parquet", "excel"):  # binary: no encoding or separator to sniff
        return out
    if "encoding" not in given:
        out["encoding"] = _encoding(path)
    if fmt in ("jsonl", "conll"):  # no separator or header to sniff
        return out
    text = _decode_head(head, out.get("encoding", values["encoding"]))
    usual = "\t" if fmt == "tsv" else ","
    truncated = len(head) == _SAMPLE_BYTES
    given_sep = separator_of(dataclasses.replace(DataConfig(), separator=given.get("separator")))
    sep = given_sep or sniff_text(text, usual, truncated=truncated) or usual
    if "separator" not in given and sep != usual:
        out["separator"] = sep
    if "header" not in given and given.get("column_names"):
        first = _first_record(text, sep)
        names = [str(n).strip().lower() for n in given["column_names"]]
        out["header"] = [c.strip().lower() for c in first] == names
    return out


def _first_sheet_row(path: Path, sheet: str | None) -> list[Any] | None:
    """The first row of the sheet (``data.sheet``, else the first), or None when it cannot be read
    (read_table then names the problem)."""
    try:
        from openpyxl import load_workbook

        book = load_workbook(path, read_only=True, data_only=True)
        try:
            ws = book[sheet] if sheet is not None else book.worksheets[0]
            for row in ws.iter_rows(max_row=1, values_only=True):
                cells = ["" if v is None else v for v in row]
                while cells and cells[-1] == "":
                    cells.pop()  # the sheet's used range may be wider than this row
                return cells
            return []
        finally:
            book.close()
    except Exception:  # a damaged workbook or an unknown sheet: read_table says which
        return None


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(_SAMPLE_BYTES)


_TAG = re.compile(r"^(O|[BIES]-\S+)$")


def _format_from_content(head: bytes) -> str:
    if head.startswith(b"PAR1"):
        return "parquet"
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start in (b"{", b"["):
        return "jsonl"
    return "conll" if _looks_like_conll(head) else "csv"


def _looks_like_conll(head: bytes) -> bool:
    """One token per line ending in a BIO tag (``EU B-ORG``), sentences split by blank lines: a
    CoNLL file without its extension, which read as csv and was refused as "NER data from format
    csv", a format the user never chose."""
    lines = [line.split() for line in head.decode("utf-8", errors="replace").splitlines()[:200]]
    rows = [fields for fields in lines if fields and not fields[0].startswith("-DOCSTART-")]
    if len(rows) < 3 or any(len(fields) < 2 for fields in rows):
        return False
    tagged = sum(bool(_TAG.match(fields[-1])) for fields in rows)
    return tagged == len(rows) and any(fields[-1] != "O" for fields in rows)


def _encoding(path: Path) -> str:
    """The encoding ``detect_encoding`` takes for the file (UTF-16, UTF-8, a CJK encoding that reads as
    its script, Windows-1252 or Latin-1; see there)."""
    encoding = detect_encoding(path)
    if encoding in ("gb18030", "cp1252", "latin-1"):
        log.warning("%s: not valid UTF-8, read as %s; set data.encoding=... if that is wrong", path, encoding)
    return encoding


def _decode_head(head: bytes, encoding: str) -> str:
    try:
        text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head)
    except LookupError:
        return ""  # read_table names the unknown encoding
    text = text.removeprefix("\ufeff")
    return cut_last_line(text) if len(head) == _SAMPLE_BYTES else text


def _first_record(text: str, sep: str) -> list[str]:
    try:
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=sep):  # \r alone ends a line too
            if row:
                return row
    except csv.Error:
        pass
    return []
