"""Read a data file into a DataFrame of strings, whatever its format.

Every cell comes back as a ``str`` (or, for JSONL/Parquet list cells, a ``list[str]``) so that
labels such as ``"0"``/``"1"`` are never turned into numbers and empty cells are ``""``, not NaN.
The index is the 1-based data row number as a user counts it (the header is not a row; for JSON
lines it is the line number, blank lines included; for a file of one JSON array the item number), so
that later checks can name the row even after other rows were dropped.

Every failure a user can cause becomes a one-line :class:`~tunelab.errors.DataError` naming the
file and the fix; pandas and pyarrow exceptions never escape, nor those of a ``.gz``, ``.bz2``
or ``.xz`` file cut short (a failed download) or a ``.zst`` file without the zstandard package.

Encodings: ``data.encoding`` is any Python codec (``utf-8``, the default, ``gb18030``, ``latin-1``,
...), or ``auto``: a UTF-16 byte-order mark, else UTF-16 without one when NUL bytes fall on every
other byte, else UTF-8 when the whole file decodes as UTF-8, else the one East Asian encoding
(GB18030, Big5, EUC-KR, Shift-JIS, EUC-JP) whose reading looks like its own script (a file that fits
several is refused naming them), else Windows-1252 when it has bytes 0x80-0x9F (control characters in
Latin-1: curly quotes, dashes, the euro sign there), else Latin-1; a choice other than UTF-8 or
UTF-16 with a BOM is logged as a warning.
A UTF-8 byte-order mark is skipped. A file that is not in the configured encoding fails naming the
line, and suggests the encoding ``auto`` would take (``gb18030`` when the bytes read as Chinese in it).

Delimited text: quoted fields are read with every separator (Excel and pandas quote a field that
holds the separator, a ';' file's ``"Hello; world"``); a separator not given is sniffed
(:mod:`tunelab.data.sniff`). Many tab- or '@'-separated files never quote (ChnSentiCorp, the IANA
TSV format, Financial PhraseBank); there a text that starts with a quotation mark would swallow
every line up to the next ``"``, or lose the quotes of a text that starts with a quoted phrase
(``"PC卡插槽"为什么``). When a parsed cell holds both the separator and a line break (records
swallowed, never a real text), the quote never closes, or a closing quote is followed by more text
of the field, such a file is read again without quoting and a warning says so. A parser error
names the line the bad record starts on (pandas counts records: a quoted text over three lines is
one). A header naming a column twice is refused (pandas renamed the second ``text.1``). Excel
workbooks: one sheet (``data.sheet``) via openpyxl. Parquet strings stored as BINARY are decoded as
UTF-8.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import functools
import gzip
import io
import json
import logging
import lzma
import re
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from tunelab.atomic import not_a_file
from tunelab.config import DataConfig
from tunelab.data.json_array import JsonArrayError, json_array_values  # not via .tables: it imports this
from tunelab.data.sniff import separator_name, sniff_file
from tunelab.errors import JSON_ERRORS, DataError, json_problem

_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "excel",
    ".xlsm": "excel",
    # Token-per-line column files: token classification reads them (.txt stays csv: ambiguous).
    ".conll": "conll",
    ".iob": "conll",
    ".bio": "conll",
}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")
AUTO_ENCODING = "auto"

log = logging.getLogger(__name__)


def detect_format(path: Path, cfg: DataConfig) -> str:
    """Pick the reader: ``cfg.format`` unless it is ``auto``, else the file extension.

    Raises:
        DataError: the format is ``auto`` and the extension says nothing.
    """
    if cfg.format != "auto":
        return cfg.format
    fmt = format_from_extension(path)
    if fmt is None:
        if cfg.separator:  # a separator only makes sense for delimited text
            return "csv"
        raise DataError(
            f"{path}: cannot tell the format from the file name; set data.format to one of "
            "csv, tsv, jsonl, parquet, excel"
        )
    return fmt


def format_from_extension(path: Path) -> str | None:
    """``csv``, ``tsv``, ``jsonl``, ``parquet``, ``excel`` or ``conll`` by file name (``.csv.gz``
    too), else None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:  # train.csv.gz: pandas decompresses csv itself
        suffixes.pop()
    return _EXTENSIONS.get(suffixes[-1]) if suffixes else None


def read_table(path: str | Path, cfg: DataConfig, *, field: str | None = None) -> pd.DataFrame:
    """Read one data file as configured by ``cfg`` into a DataFrame of strings.

    Args:
        path: the file to read.
        cfg: format, separator, encoding, header and column names to read it with.
        field: the config field that named the file (``data.train``), so that a missing file
            says which setting to fix; None for files given on the command line.

    Returns:
        One row per data row, indexed by the 1-based row number in the file.

    Raises:
        DataError: the file is missing, empty, not in ``cfg.encoding`` or not in the format.
    """
    p = Path(path)
    if not p.is_file():
        where = f"{field}: " if field else ""
        what = not_a_file(p, "data file") or "file not found (paths are relative to the current directory)"
        raise DataError(f"{where}{p}: {what}")
    fmt = detect_format(p, cfg)
    if fmt == "conll":
        raise DataError(
            f"{p}: a CoNLL column file (one token per line with its tag) is labelled data for "
            "data.task=token_classification runs (data.train/dev/test, tunelab eval --data); texts "
            "to classify or to tag (tunelab predict --input) come as a csv, tsv, jsonl, parquet or xlsx "
            "table with a text column"
        )
    try:
        df = _read_any(p, cfg, fmt)
    except _UNPACK_ERRORS as exc:
        # A .gz cut short by a failed download, or not packed at all, failed as an unexpected EOFError,
        # BadGzipFile, zlib.error, ... while the text was read, its encoding detected or named.
        message = _unpack_message(p, exc)
        if message is None:
            raise
        raise DataError(message) from None
    if len(df) == 0:
        raise DataError(f"{p}: no data rows (the file has only a header or is empty); add rows")
    if fmt != "jsonl":  # JSON lines keep their line numbers (blank lines count, as in an editor)
        df.index = pd.RangeIndex(1, len(df) + 1)
    _refuse_repeated(p, [str(c) for c in df.columns])
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _read_any(p: Path, cfg: DataConfig, fmt: str) -> pd.DataFrame:
    encoding = cfg.encoding
    if encoding.lower() == AUTO_ENCODING and fmt not in ("parquet", "excel"):
        encoding = detect_encoding(p)
        # A guess from the bytes is a warning, as data/file_options._encoding gives it: texts read in
        # the wrong encoding train without an error. detect_encoding warns itself for the East Asian
        # and BOM-less UTF-16 choices (file_options' list does not name them), so not twice here.
        guessed = encoding in ("gb18030", "cp1252", "latin-1")
        level = logging.WARNING if guessed else logging.INFO
        log.log(level, "%s: read as %s (data.encoding=auto)", p, encoding)
    elif fmt not in ("parquet", "excel"):
        _refuse_utf8_read_as_single_byte(p, encoding)
    try:
        if fmt == "parquet":
            return _read_parquet(p)
        if fmt == "excel":
            return _read_excel(p, cfg)
        if fmt == "jsonl":
            return _read_jsonl(p, encoding)
        return _read_delimited(p, cfg, fmt, encoding)
    except UnicodeDecodeError:
        raise DataError(_encoding_message(p, encoding)) from None
    except LookupError:
        raise DataError(
            f"data.encoding={cfg.encoding!r} is not a known encoding (use e.g. utf-8, latin-1)"
        ) from None


#: What a damaged or cut-short archive raises while it is unpacked (gzip.BadGzipFile is an OSError,
#: as are bz2's "Invalid data stream" and a zstandard error), and a .zst without zstandard.
_UNPACK_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, ImportError)


def _unpack_message(path: Path, exc: BaseException) -> str | None:
    """The one line for an archive that cannot be unpacked; None when ``exc`` is no such failure (a
    file that is not an archive, a folder not readable: errors with an errno)."""
    suffix = path.suffix.lower()
    if suffix not in _COMPRESSION:
        return None
    if isinstance(exc, ImportError):
        if suffix != ".zst":
            return None
        return (
            f"{path}: reading a .zst file needs the zstandard package (pip install zstandard), "
            "or unpack it first"
        )
    if isinstance(exc, OSError) and exc.errno is not None:
        return None  # permission denied and the like: not the archive's bytes
    return (
        f"{path}: cannot unpack this {suffix} file ({_one_line(exc) or type(exc).__name__}); it may be cut "
        "short or damaged: download it again, or unpack it and give the unpacked file"
    )


def _read_delimited(path: Path, cfg: DataConfig, fmt: str, encoding: str) -> pd.DataFrame:
    usual = "\t" if fmt == "tsv" else ","
    sep = separator_of(cfg)
    if sep is None:
        sep = sniff_file(path, encoding, usual) or usual
        if sep != usual:
            log.info("%s: %s-separated (sniffed; set data.separator to choose)", path, separator_name(sep))
    # Quoted fields are read with every separator: Excel and pandas quote a field that holds the
    # separator whatever it is (a ';' file's "Hello; world"). Files that never quote (tab-separated
    # corpora, Financial PhraseBank's '@') may start a text with a stray '"': see _read_quoted.
    kwargs: dict[str, Any] = {"sep": sep, "engine": "c", "quoting": csv.QUOTE_MINIMAL}
    if len(sep) > 1:  # the python engine reads a multi-character separator as a regex
        kwargs.update(sep=re.escape(sep), engine="python")
    if _is_utf8(encoding):
        encoding = "utf-8-sig"  # skips a byte-order mark (Excel writes one), reads the rest as UTF-8
    try:
        df = _read_quoted(path, cfg, encoding, kwargs)
    except UnicodeDecodeError:
        raise  # a ValueError too, but read_table names the byte and the fix
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; add a header and data rows") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, csv.Error, ValueError) as exc:
        raise DataError(_parse_message(path, cfg, sep, encoding, exc, kwargs["quoting"])) from None
    if cfg.header and not cfg.column_names and _maybe_renamed(df.columns):
        # pandas renames a repeated header name ("text,label,text": text and text.1), so the
        # check in read_table never saw it and the first "text" was used with no word.
        _refuse_repeated(path, _header_record(path, sep, encoding, kwargs))
    if len(df.columns) == 1 and cfg.separator:
        # One column whose name holds another separator: a TSV read as CSV, say, with no error.
        other = sniff_file(path, encoding, usual)
        if other is not None and other != sep:
            raise DataError(_looks_separated(path, sep, other, "it reads as a single column"))
    return df.fillna("")


def separator_of(cfg: DataConfig) -> str | None:
    """``data.separator`` as a character; ``tab`` and ``\\t`` (how a tab is typed on a command
    line: ``data.separator=tab``) mean a tab. None: not given, sniff it."""
    sep = cfg.separator
    if sep in ("tab", "\\t"):
        return "\t"
    return sep or None


def _read_quoted(path: Path, cfg: DataConfig, encoding: str, kwargs: dict[str, Any]) -> pd.DataFrame:
    """Read with quoting; where the separator is not a comma and the quoting went wrong, without
    (``kwargs["quoting"]`` is then set to ``csv.QUOTE_NONE``).

    Many tab- or '@'-separated files never quote (ChnSentiCorp, the IANA TSV format, Financial
    PhraseBank); there a text that starts with a quotation mark swallows every line up to the next
    ``"``, or, when the quote closes on the same line, loses its quotes: ``"PC卡插槽"为什么`` (a
    ChnSentiCorp review) parsed as ``PC卡插槽为什么``, so the text changed and NER offsets from
    ``predict --input`` missed the file's text. When the quote never closes (a parser error), a
    parsed cell holds both the separator and a line break (records swallowed, hardly ever a real
    text), or a closing quote is followed by more text of its field (no writer that quotes writes
    that: it would quote the whole field and double the inner quotes), the file is read again without
    quoting and a warning says so. Comma and semicolon files keep strict quoting: their writers
    (spreadsheets, Excel in the locales whose CSV separator is ``;``) all quote, and there a quoted
    cell with a ``;`` and a line break is a real text (read unquoted, it became two bad rows).
    """
    sep = kwargs["sep"]
    may_be_unquoted = sep not in (",", ";") and kwargs["engine"] == "c"
    try:
        df = _pandas_read(path, cfg, encoding, kwargs)
    except pd.errors.ParserError:
        if not may_be_unquoted:
            raise
        kwargs["quoting"] = csv.QUOTE_NONE  # the caller's messages read the file as it was read
        df = _pandas_read(path, cfg, encoding, kwargs)
        _warn_unquoted(path, sep)
        return df
    if may_be_unquoted and (_swallowed_records(df, sep) or _text_after_closing_quote(path, sep, encoding)):
        kwargs["quoting"] = csv.QUOTE_NONE
        df = _pandas_read(path, cfg, encoding, kwargs)
        _warn_unquoted(path, sep)
    return df


def _parse_message(
    path: Path, cfg: DataConfig, sep: str, encoding: str, exc: BaseException, quoting: int
) -> str:
    """The one line for a file pandas cannot parse: another separator that fits, else the file's own
    line that failed (the header line being line 1).

    pandas counts records, not lines: a quoted text over three lines is one, so its "line 6" was
    line 8 of the file after such a text. The records are counted again here (blank lines too, as
    pandas does) to name the line the bad record starts on, or "record N" when that fails.
    """
    usual = "\t" if sep == "\t" else ","
    other = sniff_file(path, encoding, usual)
    detail = _one_line(exc)
    bad = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", detail)
    if bad:
        expected, record, saw = int(bad[1]), int(bad[2]), int(bad[3])
        found = _record_start(path, sep, encoding, quoting, record, saw)
        where = f"line {found}" if found is not None else f"record {record} (blank lines counted)"
        first = _first_line(path, sep, encoding, quoting)
        against = "data.column_names names" if cfg.column_names else f"{first} has"
        detail = f"{where} has {saw} fields where {against} {expected}"
    elif "Length of header or names does not match" in detail:
        # An extra field in the first data row: pandas warns and names no line.
        longer = _longer_than_header(path, cfg, sep, encoding, quoting)
        detail = longer or "a line has more fields than the header"
    if other is not None and other != sep:
        return _looks_separated(path, sep, other, detail)
    name = "TSV" if sep == "\t" else "CSV" if sep == "," else f"text with separator {sep!r}"
    return (
        f"{path}: not readable as {name} ({detail}); check data.separator, data.header and data.format "
        "(a text that holds the separator must be in double quotes)"
    )


#: What reading the records again for a message may meet; the message then says less.
_SCAN_ERRORS = (csv.Error, UnicodeDecodeError, LookupError, EOFError, OSError, zlib.error, lzma.LZMAError)


def _records(path: Path, sep: str, encoding: str, quoting: int) -> Iterator[tuple[int, list[str]]]:
    """Each record of a delimited file as pandas counts them (a blank line is an empty record), with
    the file line it starts on (a quoted text may run over lines). Nothing for a .zip or .zst.

    With a separator of several characters pandas' python engine splits each line, quotes ignored.
    """
    stream = _open_bytes(path)
    if stream is None:
        return
    with io.TextIOWrapper(stream, encoding=encoding, newline="") as text:  # \r, \n and \r\n end lines
        if len(sep) > 1:
            for number, line in enumerate(text, start=1):
                line = line.rstrip("\r\n")
                yield number, line.split(sep) if line else []
            return
        reader = csv.reader(text, delimiter=sep, quoting=quoting)
        start = 1
        for row in reader:
            yield start, row
            start = reader.line_num + 1


def _record_start(path: Path, sep: str, encoding: str, quoting: int, record: int, fields: int) -> int | None:
    """The file line record number ``record`` (1-based, blank lines counted) starts on, or None when
    it cannot be told (that record has not ``fields`` fields here: this count differs from pandas')."""
    try:
        for number, (line, row) in enumerate(_records(path, sep, encoding, quoting), start=1):
            if number == record:
                return line if len(row) == fields else None
    except _SCAN_ERRORS:
        pass
    return None


def _first_line(path: Path, sep: str, encoding: str, quoting: int) -> str:
    """``line N`` for the first non-blank line (the header, where the file has one)."""
    try:
        for line, row in _records(path, sep, encoding, quoting):
            if row:
                return f"line {line}"
    except _SCAN_ERRORS:
        pass
    return "line 1"


def _longer_than_header(path: Path, cfg: DataConfig, sep: str, encoding: str, quoting: int) -> str | None:
    """``line 2 has 3 fields where line 1 has 2``: the first record with more fields than the header
    (or than data.column_names names), or None when none is found."""
    expected = len(cfg.column_names) if cfg.column_names else None
    header_line = 0
    try:
        for line, row in _records(path, sep, encoding, quoting):
            if not row:
                continue  # pandas skips blank lines
            if expected is None:
                expected, header_line = len(row), line
                if cfg.header:
                    continue
            elif cfg.header and not header_line:
                header_line = line  # a header row that data.column_names replaces
                continue
            if len(row) > expected:
                against = f"line {header_line} has" if not cfg.column_names else "data.column_names names"
                return f"line {line} has {len(row)} fields where {against} {expected}"
    except _SCAN_ERRORS:
        pass
    return None


def _header_record(path: Path, sep: str, encoding: str, kwargs: dict[str, Any]) -> list[str]:
    """The header row as written (pandas' own reading renames a repeated name), or [] when it
    cannot be read so."""
    try:
        first = pd.read_csv(
            path, encoding=encoding, dtype=str, keep_default_na=False, header=None, nrows=1, **kwargs
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, *_SCAN_ERRORS):
        return []
    return [str(v) for v in first.iloc[0]] if len(first) else []


def _maybe_renamed(columns: Any) -> bool:
    """Whether pandas may have renamed a repeated header name: it reads "text,text" as ``text`` and
    ``text.1``. Only then is the header read again as written (a second read of every file else)."""
    names = {str(c) for c in columns}
    return any((m := re.fullmatch(r"(.*)\.\d+", n)) is not None and m.group(1) in names for n in names)


def _refuse_repeated(path: Path, names: list[str]) -> None:
    """Refuse a header that names a column twice (spaces around names ignored; empty names, a
    spreadsheet's unused columns, are not names)."""
    stripped = pd.Index([n.strip() for n in names if n.strip()])
    repeated = sorted(set(stripped[stripped.duplicated()]))
    if repeated:  # "text, text": df["text"] was two columns, and reading it "unexpected ValueError"
        raise DataError(
            f"{path}: column name(s) {', '.join(map(repr, repeated))} appear more than once (spaces around "
            "names are ignored); rename the columns so each name is used once"
        )


def _looks_separated(path: Path, sep: str, other: str, detail: str) -> str:
    given = "TSV" if sep == "\t" else "CSV" if sep == "," else f"{separator_name(sep)}-separated"
    value = "tab" if other == "\t" else other
    return (
        f"{path}: looks {separator_name(other)}-separated, not {given} ({detail}); set "
        f"data.separator={value} (or leave data.separator out to have it detected)"
    )


def _pandas_read(path: Path, cfg: DataConfig, encoding: str, kwargs: dict[str, Any]) -> pd.DataFrame:
    with warnings.catch_warnings():
        # pandas only warns when a row has more fields than the header, dropping data.
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(
            path,
            encoding=encoding,
            dtype=str,
            keep_default_na=False,
            header=0 if cfg.header else None,
            names=cfg.column_names,
            index_col=False,
            skip_blank_lines=True,
            **kwargs,
        )


def _swallowed_records(df: pd.DataFrame, sep: str) -> bool:
    """A cell with the separator and a line break: a quote opened a field that ran over records."""
    return any(
        df[column].map(lambda v: isinstance(v, str) and sep in v and "\n" in v).any() for column in df.columns
    )


def _text_after_closing_quote(path: Path, sep: str, encoding: str) -> bool:
    """Whether a field opens with ``"`` and has more text after its closing quote (``"PC卡插槽"为什么``):
    the file does not quote, since a writer that quotes puts the whole field in quotes. Python's csv
    module in strict mode refuses exactly that ("'\\t' expected after '\"'"); pandas' parser instead
    joins the pieces and drops the quotes. False when the file cannot be scanned (pandas read it).

    Spaces (or tabs, when they are not the separator) between a closing quote and the separator or
    the line end do not count: a hand-written quoted TSV's ``"a<TAB>b" <TAB>x`` made the whole file
    read unquoted, which broke its quoted fields (a DataError: too many fields). They are taken out
    for this scan only, which cannot change the answer elsewhere: inside a quoted field, or after an
    opening quote, a space before a separator is in quotes either way."""
    stream = _open_bytes(path)
    if stream is None:
        return False
    blanks = re.escape("".join(c for c in " \t" if c != sep))
    after_quote = re.compile(f'"[{blanks}]+(?={re.escape(sep)}|\r|\n|$)')
    try:
        with io.TextIOWrapper(stream, encoding=encoding, newline="") as text:
            lines = (after_quote.sub('"', line) for line in text)
            for _ in csv.reader(lines, delimiter=sep, quoting=csv.QUOTE_MINIMAL, strict=True):
                pass
    except csv.Error as exc:
        return "expected after" in str(exc)  # not "field larger than field limit" or the like
    except _SCAN_ERRORS:
        return False
    return False


def _warn_unquoted(path: Path, sep: str) -> None:
    log.warning(
        '%s: a field starting with " ran over several records or went on after its closing quote; read '
        "as %s-separated text without quoting (quotation marks are kept as text)",
        path,
        separator_name(sep),
    )


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")


def detect_encoding(path: Path) -> str:
    """The encoding ``data.encoding=auto`` reads ``path`` with (see the module docstring).

    The whole file is decoded (streamed) for each candidate, so a stray byte at the end is
    not missed; Latin-1 decodes any byte and is the last resort.
    """
    if path.suffix.lower() in (".zip", ".zst"):
        # A .zip or .zst archive: pandas unpacks it, this check cannot look inside; UTF-8 is
        # the common case, and a wrong guess fails loudly with the data.encoding hint.
        log.info("%s: data.encoding=auto cannot look inside this archive; reading it as utf-8", path)
        return "utf-8"
    with _open_bytes(path) as f:  # type: ignore[union-attr]
        if f.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            return "utf-16"  # Excel's "Unicode text"; the codec reads the BOM and the byte order
    # Before UTF-8: UTF-16 of ASCII text ("t\x00e\x00x\x00t\x00") is valid UTF-8, NULs and all.
    utf16 = _utf16_without_bom(path)
    if utf16 is not None:
        _warn_guess(path, utf16, "NUL bytes on every other byte: UTF-16 without a byte-order mark")
        return utf16
    if _decodes(path, "utf-8"):
        return "utf-8"
    found = _cjk_encodings(path)
    if len(found) > 1:
        raise DataError(
            f"{path}: not UTF-8, and data.encoding=auto cannot choose: the bytes read as "
            + " and as ".join(f"{_CJK_SCRIPTS[e]} in {e}" for e in found)
            + f"; set data.encoding to the file's own (data.encoding={found[0]} or {', '.join(found[1:])})"
        )
    if found and found[0] != "gb18030":
        _warn_guess(path, found[0], f"the bytes read as {_CJK_SCRIPTS[found[0]]} in it")
        return found[0]
    if found or _looks_chinese(path, "gb18030"):
        # A file too short to tell the scripts apart ("北京好" is Hangul in EUC-KR too) stays GB18030,
        # as before these checks: Chinese is what this reader meets most.
        return "gb18030"
    _refuse_damaged_utf8(path)
    if _has_c1_bytes(path) and _decodes(path, "cp1252"):
        # Bytes 0x80-0x9F are control characters in Latin-1, never meant in text, and the curly
        # quotes, dashes and euro sign of Windows-1252 (Excel on Windows): read as that.
        return "cp1252"
    return "latin-1"


def _utf16_without_bom(path: Path, sample: int = 1 << 16) -> str | None:
    """``utf-16-le`` or ``utf-16-be`` for UTF-16 text without a byte-order mark, else None.

    Every ASCII character of UTF-16 text (separators, line ends, digits) has a NUL byte: after it in
    little-endian (odd offsets), before it in big-endian (even ones). Text in an 8-bit encoding has
    no NUL bytes, so NULs in 1% of the bytes or more, nine in ten of them on one side, and the whole
    file decoding as that UTF-16 are taken as it. Without this such a file read as Latin-1 garbage.
    """
    stream = _open_bytes(path)
    if stream is None:
        return None
    with stream:
        head = stream.read(sample)
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return None  # "utf-16" reads the mark and the byte order
    nuls = head.count(0)
    if nuls < max(2, len(head) // 100):
        return None
    odd = head[1::2].count(0)
    encoding = "utf-16-le" if odd >= 0.9 * nuls else "utf-16-be" if nuls - odd >= 0.9 * nuls else None
    return encoding if encoding is not None and _decodes(path, encoding) else None


def _warn_guess(path: Path, encoding: str, why: str) -> None:
    log.warning(
        "%s: read as %s (data.encoding=auto: %s); set data.encoding=... if that is wrong",
        path,
        encoding,
        why,
    )


def _refuse_damaged_utf8(path: Path) -> None:
    """Refuse a UTF-8 file with a few bad bytes (a cut character, one Latin-1 line pasted in).

    It fell through to Latin-1, which turned every other non-ASCII character into two or three
    others (each Chinese character into three), logged at info level only. A file is taken as
    UTF-8 when its valid multi-byte characters outnumber its undecodable bytes ten to one (text in
    Latin-1 or Windows-1252 has almost none: an accented letter is one byte there).
    """
    valid = invalid = 0
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with _open_bytes(path) as f:  # type: ignore[union-attr]
        while chunk := f.read(1 << 20):
            text = decoder.decode(chunk)
            bad = text.count("\ufffd")
            invalid += bad
            valid += len(_NON_ASCII.findall(text)) - bad  # a regex pass, not a Python loop per character
        text = decoder.decode(b"", final=True)
        invalid += text.count("\ufffd")
    if valid >= 10 and valid >= 10 * invalid:
        raise DataError(
            _encoding_message(path, "utf-8").split("; set data.encoding")[0]
            + f", though the rest is UTF-8 ({valid:,} characters): fix that line (a character cut or "
            "pasted from another encoding), or set data.encoding to read the whole file another way"
        )


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


#: Codecs (``codecs.lookup(...).name`` prefixes) reading one byte as one character: every byte
#: string decodes (or nearly), so a UTF-8 file given one of them is read without an error.
_SINGLE_BYTE = ("iso8859", "latin", "cp12", "cp4", "cp8", "mac-", "koi8")


def _refuse_utf8_read_as_single_byte(path: Path, encoding: str) -> None:
    """Raise ``DataError`` when a single-byte ``encoding`` (latin-1, cp1252, ...) is named for a file
    that is UTF-8 with characters beyond ASCII.

    ``data.encoding`` applies to every file of a run: set to cp1252 for an Excel dev file, as its
    message advised, it read a UTF-8 training file as mojibake (``café`` as ``cafÃ©``) without a
    word. A real cp1252 or latin-1 text is almost never valid UTF-8 too.
    """
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return  # _read_any names the unknown encoding
    if name.startswith(_SINGLE_BYTE) and _has_non_ascii(path) and _decodes(path, "utf-8"):
        raise DataError(
            f"{path}: UTF-8, but data.encoding={encoding} reads its accented characters as others "
            "(é as Ã©); data.encoding applies to every file of the run: set data.encoding=auto to read "
            "each in its own encoding"
        )


def _has_non_ascii(path: Path) -> bool:
    """Whether the file's text holds a byte beyond ASCII (False for an archive not streamed here)."""
    stream = _open_bytes(path)
    if stream is None:
        return False
    with stream as f:
        while chunk := f.read(1 << 20):
            if not chunk.isascii():
                return True
    return False


def _has_c1_bytes(path: Path) -> bool:
    with _open_bytes(path) as f:  # type: ignore[union-attr]
        while chunk := f.read(1 << 20):
            if _C1.search(chunk):
                return True
    return False


_C1 = re.compile(rb"[\x80-\x9f]")


def _open_bytes(path: Path) -> BinaryIO | None:
    """The file's bytes as pandas will decode them: .gz, .bz2 and .xz unpacked on the fly (the
    packed bytes never decode as text, so auto-detection would always end at Latin-1). None for
    archives the standard library cannot stream (.zip, .zst)."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if suffix == ".bz2":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if suffix == ".xz":
        return lzma.open(path, "rb")  # type: ignore[return-value]
    if suffix in _COMPRESSION:
        return None
    return path.open("rb")


def _decodes(path: Path, encoding: str) -> bool:
    """Whether the whole file decodes as ``encoding``. Remembered per file version: detection and
    the error hint ask the same questions of the same file (up to six full decodes each)."""
    try:
        stat = path.stat()
    except OSError:
        return _decodes_now(path, encoding)
    return _decodes_version(str(path), encoding, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _decodes_version(path: str, encoding: str, size: int, mtime_ns: int) -> bool:
    return _decodes_now(Path(path), encoding)


def _decodes_now(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with _open_bytes(path) as f:  # type: ignore[union-attr]
            while chunk := f.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _looks_chinese(path: Path, encoding: str, sample: int = 1 << 20) -> bool:
    """True when the whole file decodes as ``encoding`` into what reads as Chinese text (see
    :func:`_reads_chinese`)."""
    if not _decodes(path, encoding):
        return False
    with _open_bytes(path) as f:  # type: ignore[union-attr]
        text = codecs.getincrementaldecoder(encoding)(errors="ignore").decode(f.read(sample))
    return _reads_chinese(text)


def _reads_chinese(text: str) -> bool:
    """Whether most non-ASCII characters of ``text`` read as Chinese.

    Latin-1 text often decodes as GB18030 too: an accented letter and the ASCII letter after it
    (``ü`` + ``l`` in "Müller") make one rare GBK character, alone between ASCII letters. Chinese
    text instead has its characters in runs, and simplified Chinese is nearly all GB2312 (both
    bytes >= 0xA1); either sign in most of the non-ASCII characters is taken as Chinese.
    """
    wide = [i for i, c in enumerate(text) if ord(c) > 0x7F]
    if not wide:
        return False
    at = set(wide)
    in_runs = sum(1 for i in wide if i - 1 in at or i + 1 in at)
    common = sum(1 for i in wide if _in_gb2312(text[i]))
    return max(in_runs, common) >= 0.5 * len(wide)


def _in_gb2312(char: str) -> bool:
    try:
        char.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


#: The East Asian legacy encodings ``auto`` weighs, with the script each reads as. Their byte ranges
#: overlap: Big5, EUC-KR, Shift-JIS and EUC-JP text nearly always decodes as GB18030 too, into
#: Chinese-looking nonsense (and short GBK text as EUC-KR or Big5), so decoding proves little and each
#: reading must also look like its own script (:func:`_fits_script`).
_CJK_SCRIPTS = {
    "gb18030": "Chinese",
    "big5": "traditional Chinese",
    "euc_kr": "Korean",
    "shift_jis": "Japanese",
    "euc_jp": "Japanese",
}
#: Fewest distinct Hangul syllables (without, with spaces between words) or kana taken as evidence of
#: Korean or Japanese: GBK text of a few characters can be Hangul throughout in EUC-KR ("北京好"; one
#: ChnSentiCorp review of ten distinct characters is), and Chinese text borrows "の".
_MIN_HANGUL = 16
_MIN_HANGUL_SPACED = 6
_MIN_KANA = 3


def _cjk_encodings(path: Path, sample: int = 1 << 20) -> list[str]:
    """The encodings of :data:`_CJK_SCRIPTS` that decode the whole file into text that looks like
    their script, in that order; [] when none does (a few characters only, or no East Asian text).

    ``auto`` takes the only one, refuses several, and the hint for a file that is not in its
    configured encoding names them. The file is decoded once per encoding (streamed), and its first
    ``sample`` bytes counted by script.
    """
    stream = _open_bytes(path)
    if stream is None:
        return []
    with stream:
        head = stream.read(sample)
    counts: dict[str, tuple[dict[str, int], str]] = {}
    for encoding in _CJK_SCRIPTS:
        if _decodes(path, encoding):
            text = codecs.getincrementaldecoder(encoding)(errors="ignore").decode(head)
            counts[encoding] = (_script_counts(text, encoding), text)
    fits = {e: _fits_script(e, c) for e, (c, _) in counts.items()}
    if "gb18030" in counts and fits["gb18030"]:
        # Korean and Japanese text decode as GB18030 into plausible hanzi: EUC-KR's Hangul are
        # GB2312's rows 0xB0-0xC8, Shift-JIS kana lead bytes 0x82/0x83 make GBK characters. Chinese
        # bytes cannot read that way by chance: Hangul throughout in EUC-KR would leave out 是, 我,
        # 这, 在, 中 (rows 0xC9 on), and full-width kana in Shift-JIS need those lead bytes, which
        # GB2312 text never has. So a Korean or Japanese reading that fits wins over the Chinese one.
        others = ("euc_kr", "shift_jis", "euc_jp")
        fits["gb18030"] = _reads_chinese(counts["gb18030"][1]) and not any(fits.get(e) for e in others)
    return [e for e in _CJK_SCRIPTS if fits.get(e)]


def _script_counts(text: str, encoding: str) -> dict[str, int]:
    """How many characters of ``text`` are of each script, how many distinct Hangul and kana, and
    (for Big5) how many two-byte characters have a second byte below 0x80 and how many are in its
    block of less frequent characters (first byte 0xC9 on). Counted over the distinct characters
    (``Counter`` runs in C), so a megabyte sample costs little."""
    out = dict.fromkeys(("han", "hangul", "kana", "halfwidth_kana", "bopomofo", "private", "wide"), 0)
    out |= {"hangul_kinds": 0, "kana_kinds": 0, "low_trail": 0, "big5_rare": 0}
    if encoding == "euc_kr":
        out["hangul_gaps"] = len(_HANGUL_GAP.findall(text))
    for char, n in Counter(text).items():
        code = ord(char)
        if code < 0x80:
            continue
        out["wide"] += n
        script = _script_of(code)
        if script:
            out[script] += n
            if script in ("hangul", "kana"):
                out[f"{script}_kinds"] += 1
        if encoding == "big5":
            try:
                pair = char.encode("big5")
            except UnicodeEncodeError:
                continue
            out["low_trail"] += n if pair[1:2] < b"\x80" else 0
            out["big5_rare"] += n if pair[0] >= 0xC9 else 0
    return out


_HANGUL_GAP = re.compile("[\uac00-\ud7a3] (?=[\uac00-\ud7a3])")  # a space between Korean words


def _script_of(code: int) -> str | None:
    if 0xAC00 <= code <= 0xD7A3 or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "hangul"
    if 0x3040 <= code <= 0x30FF:
        return "kana"
    if 0xFF61 <= code <= 0xFF9F:
        return "halfwidth_kana"
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF or code >= 0x20000:
        return "han"
    if 0x3100 <= code <= 0x312F:
        return "bopomofo"
    if 0xE000 <= code <= 0xF8FF:
        return "private"
    return None


def _fits_script(encoding: str, c: dict[str, int]) -> bool:
    """Whether counts ``c`` of a reading in ``encoding`` look like that encoding's script.

    Korean: Hangul throughout (Hanja are rare in modern text; GBK text read as EUC-KR mixes in one
    Hanja for every two Hangul). Japanese: full-width kana, a tenth of the letters or more (GBK text
    has none in either reading; EUC-JP text read as Shift-JIS is half-width kana). Chinese: no
    private-use characters (Big5 punctuation read as GB18030 is), hardly any kana or Hangul; Big5
    besides has two-byte characters whose second byte is below 0x80 (two in five in Big5 text, none
    in GB2312 text, whose bytes are all 0xA1 or more), no kana or bopomofo (GBK punctuation read as
    Big5 is), and hardly any characters from its less frequent block (0xC9 on: where GB2312's rows
    0xC9-0xF7, 是 我 这 在 and the rest, land; read as Big5, most ChnSentiCorp reviews have a fifth
    to a half of their characters there, Big5 text almost none).
    """
    letters = c["han"] + c["hangul"] + c["kana"] + c["halfwidth_kana"]
    if not letters:
        return False
    if encoding == "euc_kr":
        # Korean puts a space between words (three or four syllables each); Chinese text read so does
        # not, so a short text of spaced Hangul counts as Korean too.
        spaced = c["hangul_kinds"] >= _MIN_HANGUL_SPACED and c["hangul_gaps"] >= c["hangul"] / 6
        return (c["hangul_kinds"] >= _MIN_HANGUL or spaced) and c["hangul"] >= 0.95 * letters
    if encoding in ("shift_jis", "euc_jp"):
        return (
            c["kana_kinds"] >= _MIN_KANA
            and c["kana"] >= 0.1 * letters
            and c["halfwidth_kana"] <= c["kana"]
            and c["hangul"] == c["private"] == 0
        )
    chinese = (
        c["han"] >= 0.5 * letters
        and c["kana"] < 0.1 * letters
        and c["hangul"] < 0.1 * letters
        and c["private"] <= 0.01 * c["wide"]
    )
    if encoding == "big5":
        return (
            chinese
            and c["kana"] == c["bopomofo"] == c["private"] == 0
            and c["low_trail"] >= max(1, 0.1 * c["wide"])
            and c["big5_rare"] <= 0.05 * c["wide"]
        )
    return chinese


def _read_jsonl(path: Path, encoding: str) -> pd.DataFrame:
    """JSON lines (or one JSON array of objects) as a table of strings indexed by line (item) number.

    Read a line at a time (``json_records``), each record's cells made strings as they come, and the
    columns built from those: the whole file read, decoded, split and parsed before the table was
    made held about ten times the file in memory at its peak (500 MB for a 54 MB file), where a CSV
    of the same rows held three.
    """
    table = _JsonTable(path)
    if is_json_array(path):
        table.unit = "item"  # "[]": no rows (read_table says so), not "the file is empty"
    for unit, number, record in json_records(path, encoding):
        table.unit = unit
        table.add(number, record)
    return table.frame()


def json_records(path: Path, encoding: str) -> Iterator[tuple[str, int, Any]]:
    """``("line", line number, value)`` for each non-blank line of a JSON lines file, read a line at
    a time, or ``("item", item number, value)`` for each item of a file holding one JSON array (which
    can only be parsed whole).

    Raises:
        DataError: an archive that cannot be streamed, or a line that is not JSON (named).
    """
    stream = _open_bytes(path)  # .jsonl.gz unpacked, as .csv.gz is (its packed bytes were decoded)
    if stream is None:
        raise DataError(f"{path}: a {path.suffix} archive cannot be read as JSON lines; unpack it first")
    with stream:
        if is_json_array(path):
            # A whole-file JSON array of objects is accepted too, its items numbered 1..n.
            text = stream.read().decode(encoding).removeprefix("\ufeff")  # UTF-8's BOM
            try:
                records = json_array_values(text)
            except JsonArrayError:  # nested too deeply too: the line reader names the line
                records = None  # maybe JSON lines that are arrays: the line reader names the line
            if records is not None:
                for number, record in enumerate(records, start=1):
                    yield "item", number, record
                return
            stream.seek(0)  # JSON lines that are arrays: the line reader names the line
        # newline="\n": split on "\n" only; str.splitlines (and pandas' read_json) also split on
        # U+2028/U+2029 and other separators, which JSON allows unescaped inside strings.
        lines = io.TextIOWrapper(stream, encoding=encoding, newline="\n")
        for lineno, line in enumerate(lines, start=1):
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except JSON_ERRORS as exc:
                raise DataError(
                    f"{path} line {lineno}: not valid JSON ({json_problem(exc)}); data.format jsonl expects "
                    "one JSON object per line"
                ) from None
            yield "line", lineno, record


class _JsonTable:
    """The rows of a JSON lines file (or array), checked and made cells of strings as they are added."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.unit = "line"
        self.index: list[int] = []
        # by first appearance, as pandas' from_records orders them; a key missing from a row is ""
        # there, as its NaN became through _cell
        self.columns: dict[str, list[str | list[str]]] = {}
        self.first: Any = None  # the first record

    def add(self, number: int, record: Any) -> None:
        path, unit = self.path, self.unit
        if not self.index:
            self.first = record  # frame checks a table of one row for pandas' whole-column layout
        if not isinstance(record, dict):
            raise DataError(
                f'{path} {unit} {number}: expected a JSON object such as {{"text": ..., "label": ...}}, '
                f"got {type(record).__name__}"
            )
        for column, value in record.items():
            # "\ud800" is valid JSON but no Unicode text: every later step (pandas, the tokenizer)
            # failed on it with an unexpected UnicodeEncodeError.
            problem = _not_unicode(column, value)
            if problem is not None:
                raise DataError(f"{path} {unit} {number}: {problem}; fix or remove the row")
        rows = len(self.index)
        for column, value in record.items():
            cells = self.columns.get(column)
            if cells is None:
                cells = self.columns[column] = [""] * rows
            cells.append(_cell(value))
        for cells in self.columns.values():
            if len(cells) == rows:  # not in this record
                cells.append("")
        self.index.append(number)

    def frame(self) -> pd.DataFrame:
        """The table; none for a file of blank lines, an empty one for ``[]`` (read_table refuses it)."""
        if not self.index and self.unit == "line":
            raise DataError(f"{self.path}: the file is empty; add one JSON object per line")
        if len(self.index) == 1 and _column_oriented(self.first):
            # pandas' df.to_json("x.json") writes {"text": {"0": ..., "1": ...}, "label": {...}}: read
            # as one row, the whole column became one text and one prediction
            raise DataError(
                f"{self.path}: one JSON object holding whole columns (pandas' default to_json); write one "
                "object per row instead: df.to_json(path, orient='records', lines=True)"
            )
        # a column at a time, its list freed once pandas holds it (pandas 3 keeps a column of strings
        # as Arrow strings, a column with lists as Python objects, as from the old from_records)
        columns = {name: pd.Series(self.columns.pop(name)) for name in list(self.columns)}
        frame = pd.DataFrame(columns)
        frame.index = pd.Index(self.index)
        return frame


def _not_unicode(column: str, value: Any) -> str | None:
    """What in one JSON cell is not valid Unicode (a lone surrogate), as the error names it, else
    None. The column name and every string inside a list or object value (their keys included) are
    checked as a string cell is: a key became a column name, a list a multi-label label list and an
    object a JSON text, and each failed later (validate, or train after its first epoch) with an
    unexpected UnicodeEncodeError. Walked with a stack, not recursion: json.loads takes nesting
    deeper than a recursive walk would."""
    # (what the error calls the cell, where inside it as Python subscripts, is it a key, the value);
    # pushed in reverse, so the first bad string in the file's order is named
    todo: list[tuple[str, str, bool, Any]] = [
        (f"column {column!r}", "", False, value),
        ("", "", True, column),
    ]
    while todo:
        cell, inside, is_key, item = todo.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                at = exc.start
                where = f"{cell} at {inside}" if inside else cell
                if not is_key:
                    what = where
                elif cell:  # a key inside an object value
                    what = f"{where}: the key {item!r}"
                else:
                    what = f"column name {item!r}"
                return (
                    f"{what} is not valid Unicode (a lone surrogate \\u{ord(item[at]):04x} at position {at})"
                )
        elif isinstance(item, list):
            todo.extend((cell, f"{inside}[{i}]", False, v) for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            for key, v in reversed(item.items()):
                todo.append((cell, f"{inside}[{key!r}]", False, v))
                todo.append((cell, inside, True, key))
    return None


def _column_oriented(record: Any) -> bool:
    """pandas' ``orient="columns"`` (every value an object of row -> cell) or ``orient="split"``."""
    if not isinstance(record, dict) or not record:
        return False
    if all(isinstance(v, dict) for v in record.values()):
        return True
    return {"columns", "data"} <= set(record) and isinstance(record["data"], list)


def is_json_array(path: str | Path) -> bool:
    """Whether ``path`` holds one JSON array (its first character ``[``): its rows are then counted
    as the array's items, not as lines. False for a file that cannot be opened."""
    try:
        stream = _open_bytes(Path(path))
        if stream is None:
            return False
        with stream:
            # past any run of blank lines: the first 4 KB alone took a JSON array after 5,000 blank
            # lines for JSON lines ("line 5001: expected a JSON object, got list")
            while chunk := stream.read(1 << 16):
                first = chunk.replace(b"\x00", b"").lstrip(b"\xef\xbb\xbf\xff\xfe \t\r\n")[:1]
                if first:
                    return first == b"["
    except (*_SCAN_ERRORS, ValueError):
        return False
    return False


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for damaged files
        raise DataError(
            f"{path}: not a readable Parquet file ({_one_line(exc)}); check data.format"
        ) from None
    # A named index (df.set_index("ticket_id").to_parquet()) is a column of the file: kept as the
    # index, read_table's row numbers replaced it, and predict's output lost the ids. An unnamed one
    # (df[mask].to_parquet()'s row labels) is no data; nor is a name a column has already.
    named = [n for n in df.index.names if n is not None and n not in df.columns]
    if named:
        df = df.reset_index(level=named)
    if not len(df):
        return df
    return df.apply(lambda col: col.map(_cell))


def _read_excel(path: Path, cfg: DataConfig) -> pd.DataFrame:
    """One sheet of an .xlsx workbook (``data.sheet``, else the first), through openpyxl.

    Cells keep their text as in ``_cell`` (a whole number stays ``"1"``, not ``"1.0"``).
    """
    try:
        import openpyxl  # noqa: F401  # lazy: only Excel files need it; checked for a clear message
    except ImportError:
        raise DataError(f"{path}: reading Excel files needs openpyxl (pip install openpyxl)") from None
    try:
        book = pd.ExcelFile(path, engine="openpyxl")
    except Exception as exc:  # zipfile.BadZipFile, KeyError, ... for a file that is not a workbook
        raise DataError(
            f"{path}: not a readable .xlsx workbook ({_one_line(exc)}); check data.format"
        ) from None
    with book:
        sheets = [str(n) for n in book.sheet_names]
        sheet = cfg.sheet if cfg.sheet is not None else sheets[0]
        if sheet not in sheets:
            raise DataError(
                f"{path}: no sheet {sheet!r} (sheets: {', '.join(map(repr, sheets))}); "
                "set data.sheet to one of them"
            )
        header = 0 if cfg.header else None
        try:
            df = book.parse(sheet, header=header, dtype=object, keep_default_na=False)
            if cfg.header and not cfg.column_names and _maybe_renamed(df.columns):
                # The header row as written: pandas renames a repeated name (text, text.1).
                first = book.parse(sheet, header=None, nrows=1, dtype=object, keep_default_na=False)
                _refuse_repeated(path, [str(_cell(v)) for v in first.iloc[0]] if len(first) else [])
        except (ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"{path}: sheet {sheet!r} cannot be read ({_one_line(exc)})") from None
    if cfg.column_names:
        # Named here, not by pandas' names=: with fewer names than columns it made the first column
        # the index (every column shifted by one, the texts read from the next one), with more it
        # failed as "Expected 2 fields"; a CSV with the same mismatch is refused as here.
        names = list(cfg.column_names)
        if len(names) != len(df.columns):
            raise DataError(
                f"{path}: sheet {sheet!r} has {len(df.columns)} columns, data.column_names names "
                f"{len(names)} ({', '.join(names)}); name every column, in order"
            )
        df.columns = names
    return df.apply(lambda col: col.map(_cell)) if len(df) else df


def _cell(value: Any) -> str | list[str]:
    """Normalise one JSON/Parquet cell: lists stay lists (multi-label), the rest become strings."""
    if hasattr(value, "tolist"):  # numpy arrays (Parquet list cells) and numpy scalars
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return ["" if v is None else _text(v) for v in value]
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return _text(value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if value is None or pd.isna(value):  # null, a missing key, or a gap in a Parquet column
        return ""
    return _text(value)


def _text(value: Any) -> str:
    """A list item, or a cell that is no list, string or null, as text: the same for both (a whole
    float as an int, a bool as JSON spells it). Parquet strings stored as BINARY (no UTF8 annotation,
    as some writers store them) come back as bytes, and str() made b'hello' of them. Bytes that are
    not UTF-8 are no text (an image or an embedding beside the texts): kept as ``b'...'``, as before,
    so that a file is not refused for a column the run never reads.
    """
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return str(bytes(value))
    if isinstance(value, bool):
        # as JSON and a CSV spell it: str() gave "True", so a run trained on JSONL's true refused a
        # CSV test file's true ("not in the training data (known: False, True)")
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an int column with gaps comes back as float: 1.0 -> "1"
    return str(value)


def _encoding_message(path: Path, encoding: str) -> str:
    """Name the line and the first undecodable byte with its offset in the file (not in pandas'
    read chunk), and the encoding to try: the one ``auto`` would choose (UTF-16 without a BOM, the
    East Asian encodings whose reading looks like their script), else GB18030 when the bytes read as
    Chinese in it."""
    where = detail = ""
    stream = _open_bytes(path)  # a .gz file's text, not its packed bytes (the gzip header was named)
    data = b""
    if stream is not None:
        with stream:
            data = stream.read()
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        where = f" on line {line}"
        unpacked = " of the unpacked text" if path.suffix.lower() in _COMPRESSION else ""
        detail = f" (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}{unpacked})"
    utf16 = None if stream is None else _utf16_without_bom(path)
    # Not the codec that just failed: a GBK file configured as big5 is told gb18030, not big5 again.
    fits = [] if stream is None else [e for e in _cjk_encodings(path) if not _same_codec(e, encoding)]
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        hint = "utf-16 (the file starts with a UTF-16 byte-order mark: Excel's Unicode text), or auto"
    elif utf16 is not None and not _same_codec(utf16, encoding):
        hint = f"{utf16} (NUL bytes on every other byte: UTF-16 without a byte-order mark), or auto"
    elif len(fits) == 1:
        hint = f"{fits[0]} (the bytes read as {_CJK_SCRIPTS[fits[0]]} in it), or auto"
    elif fits:
        scripts = " and as ".join(f"{_CJK_SCRIPTS[e]} in {e}" for e in fits)
        hint = f"{fits[0]} or {' or '.join(fits[1:])} (the bytes read as {scripts}: check which)"
    elif _looks_chinese(path, "gb18030") and not _same_codec("gb18030", encoding):
        hint = "gb18030 (the bytes read as Chinese in GB18030/GBK), or auto"
    elif _is_utf8(encoding) and _has_c1_bytes(path) and _decodes(path, "cp1252"):
        hint = "cp1252 (Windows quotes, dashes or the euro sign), or auto"
    else:
        hint = "latin-1" if _is_utf8(encoding) else "utf-8"
    return (
        f"{path}: not valid {encoding}{detail}{where}; set data.encoding, e.g. data.encoding={hint} "
        "(it applies to every file of the run: auto reads each in its own encoding)"
    )


def _same_codec(a: str, b: str) -> bool:
    try:
        return codecs.lookup(a).name == codecs.lookup(b).name
    except LookupError:
        return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
