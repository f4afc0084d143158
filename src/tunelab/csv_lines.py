"""The line ending of a CSV file of user texts: RFC 4180's "\\r\\n" only where a text holds a "\\r".

Python's csv writer (pandas' ``to_csv`` uses it) quotes a field only when it holds the separator,
the quote character or a character of the line terminator. With "\\n" a text holding a lone "\\r"
(an old Mac line break, a pasted ticket) was written bare, and every reader (csv, pandas, a
spreadsheet) ended the record there: the row split and the later columns shifted. With "\\r\\n" each
field holding "\\r" or "\\n" is quoted, so every record reads back as one row, its text intact.

Only a file holding such a text gets "\\r\\n": the others keep the "\\n" they always had, so files
written before, scripts that cut columns (a "\\r\\n" file leaves "\\r" on each line's last cell) and
tests comparing text see no change.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def line_end(cells: Iterable[Any]) -> str:
    """The line terminator for a CSV file of ``cells``: "\\r\\n" if a text among them holds "\\r"."""
    return "\r\n" if any(isinstance(cell, str) and "\r" in cell for cell in cells) else "\n"


def frame_line_end(table: pd.DataFrame) -> str:
    """``line_end`` of a table's header and cells (only a column of objects or text can hold text)."""
    kinds = [dtype.kind for dtype in table.dtypes]  # by position: a name may be there twice
    texts = [table.iloc[:, i].tolist() for i, kind in enumerate(kinds) if kind in "OSU"]
    return line_end(itertools.chain(table.columns, *texts))
