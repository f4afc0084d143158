"""Which separator a delimited text file uses, from a sample of its first lines.

``csv.Sniffer`` (restricted to the usual separators, given the sample's first lines) makes the
first guess: it is quote-aware, so it finds ``;`` in an Excel or pandas export whose quoted texts
hold commas. Its guess is kept only when it splits every record of the sample into the same
number (2 or more) of fields: the Sniffer answers for any sample, and a quote inside a text
followed by a separator-like character (``"He said ""no""; then left",a``) makes it pick ``;`` in
a comma file, while on a one-column or irregular sample it raises. Else the first candidate (the
extension's usual one first) that splits every record consistently wins, read with quoting and,
for files that never quote (Financial PhraseBank's ``@``: a sentence may start with an unmatched
``"``), without.

pandas' own ``sep=None`` was not used: its python engine sniffs the header line alone, and reads
the whole file with the slow python parser.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

#: The separators looked for, in order of preference after the extension's usual one.
SEPARATORS = (",", "\t", ";", "|", "@")
SAMPLE_BYTES = 64 * 1024
#: What the Sniffer sees of the sample: its first lines. Its quote regexes are quadratic in the
#: quotes of an unbalanced sample (13,000 lines of ``a,"b``: 13 s in ``tunelab validate``); 4,000
#: characters cost at most a fifth of a second, and its guess is still checked on the whole sample.
SNIFF_CHARS = 4000
SNIFF_LINES = 50
_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe", "@": "'@'"}
_COMPRESSED = (".gz", ".bz2", ".xz", ".zip", ".zst")


def separator_name(sep: str) -> str:
    """``tab``, ``comma``, ``semicolon``, ... for messages (``looks tab-separated``)."""
    return _NAMES.get(sep, repr(sep))


def sniff_text(text: str, usual: str, *, truncated: bool = False) -> str | None:
    """The separator of a sample of delimited text, or None when no candidate fits every record.

    Args:
        text: the first lines of the file, decoded.
        usual: the separator the extension implies (``,`` for .csv, tab for .tsv), tried first
            after the Sniffer's own guess.
        truncated: ``text`` is the start of a longer file, so its last record may be cut short
            (a quoted field that goes on past the sample) and is not counted.
    """
    candidates = dict.fromkeys((usual, *SEPARATORS))
    head = cut_last_line(text[:SNIFF_CHARS]) if len(text) > SNIFF_CHARS else text
    head = "".join(head.splitlines(keepends=True)[:SNIFF_LINES])
    try:
        guess = csv.Sniffer().sniff(head, delimiters="".join(c for c in candidates if len(c) == 1)).delimiter
    except csv.Error:
        guess = None
    if guess and consistent(text, guess, truncated=truncated):
        return guess
    for sep in candidates:
        if consistent(text, sep, truncated=truncated):
            return sep
    return None


def consistent(text: str, sep: str, *, truncated: bool = False) -> bool:
    """Whether ``sep`` splits every non-blank record of ``text`` into the same 2+ fields,
    honouring quotes or (for files that never quote) not."""
    for quoting in (csv.QUOTE_MINIMAL, csv.QUOTE_NONE):
        try:
            # newline="": a record may end in \r alone (Excel for Mac's "CSV (Macintosh)"), which
            # io.StringIO's default does not split on: the whole sample was one record.
            rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=quoting) if r]
        except csv.Error:
            continue
        if truncated and len(rows) > 1:
            rows.pop()
        counts = {len(r) for r in rows}
        if len(counts) == 1 and counts.pop() >= 2:
            return True
    return False


def sample(path: Path, encoding: str) -> tuple[str, bool] | None:
    """The decoded first ``SAMPLE_BYTES`` of ``path`` and whether the file goes on; None for a
    compressed file (pandas unpacks it; the extension's separator is used) or an unknown codec."""
    if path.suffix.lower() in _COMPRESSED:
        return None
    with path.open("rb") as f:
        head = f.read(SAMPLE_BYTES)
    try:
        text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head)
    except LookupError:
        return None  # read_table names the unknown encoding
    text = text.removeprefix("\ufeff")
    truncated = len(head) == SAMPLE_BYTES
    return (cut_last_line(text) if truncated else text), truncated


def cut_last_line(text: str) -> str:
    """``text`` without its last line, which may be cut short; lines end in \n, \r\n or \r alone."""
    end = max(text.rfind("\n"), text.rfind("\r"))
    return text[:end] if end > 0 else text


def sniff_file(path: Path, encoding: str, usual: str) -> str | None:
    """The separator of the file at ``path`` (see :func:`sniff_text`); None when it cannot tell."""
    got = sample(path, encoding)
    if got is None:
        return None
    text, truncated = got
    return sniff_text(text, usual, truncated=truncated)
