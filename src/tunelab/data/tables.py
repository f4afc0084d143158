"""The table-reading helpers the apps share with the training reader, under stable public names.

The apps (``tunelab.apps``) use only the public API and the service; the recommender still reads
its items and interactions with pandas itself (it keeps JSON and Parquet values typed, which the
training reader turns into text), and takes from here what makes a file read the same way on both
surfaces: the sniffed separator, a repeated header name refused, each record's file line, a file
holding one JSON array read as its items. A thin layer over :mod:`tunelab.data.readers`,
:mod:`tunelab.data.sniff` and :mod:`tunelab.data.json_array`, which may change inside.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from tunelab.data import readers, sniff

# A file holding one JSON array read as its items, as the training reader reads it. Written in its own
# module, not here: readers uses it too, and this module imports readers (a circular import).
from tunelab.data.json_array import JsonArrayError as JsonArrayError
from tunelab.data.json_array import JsonItem as JsonItem
from tunelab.data.json_array import first_line_is_json as first_line_is_json
from tunelab.data.json_array import iter_json_array as iter_json_array
from tunelab.data.json_array import json_array_items as json_array_items
from tunelab.data.json_array import json_array_values as json_array_values

#: What scanning a file's records may raise (a bad byte, a damaged archive, csv's own errors).
SCAN_ERRORS = readers._SCAN_ERRORS


def sniff_separator(path: Path, encoding: str, usual: str) -> str | None:
    """The separator of ``path`` among ``, \\t ; | @`` (``usual`` when in doubt); None when unknown."""
    return sniff.sniff_file(path, encoding, usual)


def refuse_repeated_names(path: Path, names: list[str]) -> None:
    """Raise ``DataError`` naming the header names used twice (spaces around them ignored)."""
    readers._refuse_repeated(path, names)


def maybe_renamed(columns: Iterable[object]) -> bool:
    """Whether pandas may have renamed a repeated header name (``text``, ``text.1``)."""
    return readers._maybe_renamed(columns)


def header_as_written(path: Path, sep: str, encoding: str) -> list[str]:
    """The CSV header row as written, before pandas renames anything ([] when unreadable)."""
    return readers._header_record(path, sep, encoding, {"sep": sep})


def record_lines(path: Path, sep: str, encoding: str) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record with the file line it starts on (quotes honoured, blank lines as ``[]``)."""
    return readers._records(path, sep, encoding, csv.QUOTE_MINIMAL)


def record_start_line(path: Path, sep: str, encoding: str, record: int, fields: int) -> int | None:
    """The file line record ``record`` (1-based) starts on, None when it cannot be told."""
    return readers._record_start(path, sep, encoding, csv.QUOTE_MINIMAL, record, fields)


def open_text_bytes(path: Path) -> BinaryIO | None:
    """The file's bytes as they are decoded (.gz, .bz2, .xz unpacked); None for .zip and .zst."""
    return readers._open_bytes(path)
