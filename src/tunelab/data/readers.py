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
...), or ``auto``: a UTF-16 byte-order mark, else UTF-8 when the whole file decodes as UTF-8, else
GB18030 when it decodes as that into mostly common Chinese characters, else Windows-1252 when it has
bytes 0x80-0x9F (control characters in Latin-1: curly quotes, dashes, the euro sign there), else
Latin-1; the choice is logged.
A UTF-8 byte-order mark is skipped. A file that is not in the configured encoding fails naming the
line, and suggests ``gb18030`` when the bytes read as Chinese in it.

Delimited text: quoted fields are read with every separator (Excel and pandas quote a field that
holds the separator, a ';' file's ``"Hello; world"``); a separator not given is sniffed
(:mod:`tunelab.data.sniff`). Many tab- or '@'-separated files never quote (ChnSentiCorp, the IANA
TSV format, Financial PhraseBank); there a text that starts with a quotation mark would swallow
every line up to the next ``"``. When a parsed cell holds both the separator and a line break
(records swallowed, never a real text), or the quote never closes, such a file is read again
without quoting and a warning says so. A parser error names the line the bad record starts on
(pandas counts records: a quoted text over three lines is one). A header naming a column twice is
refused (pandas renamed the second ``text.1``). Excel workbooks: one sheet (``data.sheet``) via
openpyxl. Parquet strings stored as BINARY are decoded as UTF-8.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import json
import logging
import lzma
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from tunelab.config import DataConfig
from tunelab.data.sniff import separator_name, sniff_file
from tunelab.errors import DataError

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
        what = "is a folder, not a file" if p.is_dir() else "file not found"
        raise DataError(f"{where}{p}: {what} (paths are relative to the current directory)")
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
        log.info("%s: read as %s (data.encoding=auto)", p, encoding)
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
    ``"``. When the quote never closes (a parser error), or a parsed cell holds both the separator
    and a line break (records swallowed, hardly ever a real text), the file is read again without
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
    if may_be_unquoted and _swallowed_records(df, sep):
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


def _warn_unquoted(path: Path, sep: str) -> None:
    log.warning(
        '%s: a field starting with " ran over several records; read as %s-separated text without '
        "quoting (quotation marks are kept as text)",
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
    if _decodes(path, "utf-8"):
        return "utf-8"
    if _looks_chinese(path, "gb18030"):
        return "gb18030"
    _refuse_damaged_utf8(path)
    if _has_c1_bytes(path) and _decodes(path, "cp1252"):
        # Bytes 0x80-0x9F are control characters in Latin-1, never meant in text, and the curly
        # quotes, dashes and euro sign of Windows-1252 (Excel on Windows): read as that.
        return "cp1252"
    return "latin-1"


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
    """True when the whole file decodes as ``encoding`` into what reads as Chinese text.

    Latin-1 text often decodes as GB18030 too: an accented letter and the ASCII letter after it
    (``ü`` + ``l`` in "Müller") make one rare GBK character, alone between ASCII letters. Chinese
    text instead has its characters in runs, and simplified Chinese is nearly all GB2312 (both
    bytes >= 0xA1); either sign in most of the non-ASCII characters is taken as Chinese.
    """
    if not _decodes(path, encoding):
        return False
    with _open_bytes(path) as f:  # type: ignore[union-attr]
        text = codecs.getincrementaldecoder(encoding)(errors="ignore").decode(f.read(sample))
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


def _read_jsonl(path: Path, encoding: str) -> pd.DataFrame:
    stream = _open_bytes(path)  # .jsonl.gz unpacked, as .csv.gz is (its packed bytes were decoded)
    if stream is None:
        raise DataError(f"{path}: a {path.suffix} archive cannot be read as JSON lines; unpack it first")
    with stream:
        raw = stream.read()
    text = raw.decode(encoding).removeprefix("\ufeff")  # a UTF-8 byte-order mark
    if not text.strip():
        raise DataError(f"{path}: the file is empty; add one JSON object per line")
    numbered, unit = _json_array(text), "item"
    if numbered is None:
        unit = "line"
        numbered = []
        # Split on "\n" only: str.splitlines (and pandas' read_json) also split on U+2028/U+2029
        # and other separators, which JSON allows unescaped inside strings.
        for lineno, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path} line {lineno}: not valid JSON ({exc.msg}); data.format jsonl expects "
                    "one JSON object per line"
                ) from None
    if len(numbered) == 1 and _column_oriented(numbered[0][1]):
        # pandas' df.to_json("x.json") writes {"text": {"0": ..., "1": ...}, "label": {...}}: read as
        # one row, the whole column became one text and one prediction
        raise DataError(
            f"{path}: one JSON object holding whole columns (pandas' default to_json); write one object "
            "per row instead: df.to_json(path, orient='records', lines=True)"
        )
    for lineno, record in numbered:
        if not isinstance(record, dict):
            raise DataError(
                f'{path} {unit} {lineno}: expected a JSON object such as {{"text": ..., "label": ...}}, '
                f"got {type(record).__name__}"
            )
        for column, value in record.items():
            # "\ud800" is valid JSON but no Unicode text: every later step (pandas, the tokenizer)
            # failed on it with an unexpected UnicodeEncodeError.
            if not isinstance(value, str):
                continue
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                at = exc.start
                raise DataError(
                    f"{path} {unit} {lineno}: column {column!r} is not valid Unicode (a lone surrogate "
                    f"\\u{ord(value[at]):04x} at position {at}); fix or remove the row"
                ) from None
    df = pd.DataFrame.from_records([record for _, record in numbered], index=[n for n, _ in numbered])
    return df.apply(lambda col: col.map(_cell)) if len(df) else df


def _column_oriented(record: Any) -> bool:
    """pandas' ``orient="columns"`` (every value an object of row -> cell) or ``orient="split"``."""
    if not isinstance(record, dict) or not record:
        return False
    if all(isinstance(v, dict) for v in record.values()):
        return True
    return {"columns", "data"} <= set(record) and isinstance(record["data"], list)


def _json_array(text: str) -> list[tuple[int, Any]] | None:
    """A whole-file JSON array of objects is accepted too; None when ``text`` is not one."""
    if not text.lstrip().startswith("["):
        return None
    try:
        records = json.loads(text)
    except json.JSONDecodeError:
        return None  # maybe JSON lines that are arrays: the line reader names the line
    return list(enumerate(records, start=1))


def is_json_array(path: str | Path) -> bool:
    """Whether ``path`` holds one JSON array (its first character ``[``): its rows are then counted
    as the array's items, not as lines. False for a file that cannot be opened."""
    try:
        stream = _open_bytes(Path(path))
        if stream is None:
            return False
        with stream:
            head = stream.read(4096)
    except (*_SCAN_ERRORS, ValueError):
        return False
    # UTF-8 or UTF-16 byte-order marks, UTF-16's zero bytes and whitespace before the first character
    return head.replace(b"\x00", b"").lstrip(b"\xef\xbb\xbf\xff\xfe \t\r\n")[:1] == b"["


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
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an int column with gaps comes back as float: 1.0 -> "1"
    return str(value)


def _text(value: Any) -> str:
    """A list item or binary cell as text: Parquet strings stored as BINARY (no UTF8 annotation,
    as some writers store them) come back as bytes, and str() made b'hello' of them. Bytes that are
    not UTF-8 are no text (an image or an embedding beside the texts): kept as ``b'...'``, as before,
    so that a file is not refused for a column the run never reads.
    """
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return str(bytes(value))
    return str(value)


def _encoding_message(path: Path, encoding: str) -> str:
    """Name the line and the first undecodable byte with its offset in the file (not in pandas'
    read chunk), and the encoding to try: GB18030 when the bytes read as Chinese in it."""
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
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        hint = "utf-16 (the file starts with a UTF-16 byte-order mark: Excel's Unicode text), or auto"
    elif _looks_chinese(path, "gb18030") and encoding.lower().replace("-", "") != "gb18030":
        hint = "gb18030 (the bytes read as Chinese in GB18030/GBK), or auto"
    elif _is_utf8(encoding) and _has_c1_bytes(path) and _decodes(path, "cp1252"):
        hint = "cp1252 (Windows quotes, dashes or the euro sign), or auto"
    else:
        hint = "latin-1" if _is_utf8(encoding) else "utf-8"
    return f"{path}: not valid {encoding}{detail}{where}; set data.encoding, e.g. data.encoding={hint}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
