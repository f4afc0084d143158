"""A file of predictions written a chunk at a time, as ``files.write_predictions`` writes it whole.

``predict_file`` predicts ``CHUNK_ROWS`` rows at a time; holding every row's output (records, the
output table, its CSV text) until the end was most of its memory. Each chunk's rows are appended to
a temporary sibling of the output, renamed over it once all are written; a failure removes it, so
the old output stays and no half-written file appears. The rows are written as the whole-table
writer writes them: CSV, TSV and JSON lines byte for byte, Parquet with the same schema, values and
pandas metadata (see ``ChunkedOutput._typed``).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.atomic import _create_temp, rename_new
from tunelab.csv_lines import frame_line_end, line_end
from tunelab.errors import DataError, RunError
from tunelab.inference.files import (
    SEPARATORS,
    PredictedChunk,
    _arrow_type,
    _csv_cell,
    csv_table,
    jsonl_text,
    prediction_table,
    write_predictions,
)

if TYPE_CHECKING:
    from collections.abc import Container, Iterator
    from types import TracebackType

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq


class ChunkedOutput:
    """``with ChunkedOutput(target, fmt) as out: out.write(chunk)``: renamed into place on leaving
    the block, removed if an exception leaves it."""

    def __init__(self, target: Path, fmt: str, *, overwrite: bool = True) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.overwrite = overwrite  # False: a file another process put at target meanwhile is kept
        fd, self.tmp = _create_temp(target)
        self.handle = os.fdopen(fd, "wb")
        self.target, self.fmt = target, fmt
        self.rows = 0
        self.line_end: str | None = None  # CSV's, chosen by the first chunk (_line_end)
        self.first: tuple[list[str], dict[str, Any]] | None = None  # the first chunk's columns, field dtypes
        # Parquet: each input column's (whole-table dtype, written as text), the types _parquet_schema
        # would choose for them, the file's schema and its writer
        self.echoed: dict[str, tuple[Any, bool]] | None = None
        self.chosen: dict[str, pa.DataType] = {}
        self.schema: pa.Schema | None = None
        self.parquet: pq.ParquetWriter | None = None

    def __enter__(self) -> ChunkedOutput:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                with self._naming_target():
                    self._finish()
        finally:
            try:
                if self.parquet is not None and self.parquet.is_open:  # failed: else it writes its
                    with contextlib.suppress(Exception):  # footer when collected, to a closed file
                        self.parquet.close()
                self.handle.close()
            finally:
                Path(self.tmp).unlink(missing_ok=True)  # renamed away when finished

    def write(self, chunk: PredictedChunk) -> None:
        with self._naming_target():
            if self.fmt == "jsonl":
                self.handle.write(jsonl_text(chunk.records).encode())
            elif self.fmt == "parquet":
                self._write_parquet(chunk)
            else:
                table = csv_table(chunk.records, chunk.input_types)
                self._check(table, chunk.input_types)
                newline = self._line_end(table, chunk)
                text = table.to_csv(
                    index=False, sep=SEPARATORS[self.fmt], header=not self.rows, lineterminator=newline
                )
                self.handle.write(text.encode())
            self.handle.flush()  # on disk as each chunk is done, not held in a buffer
        self.rows += len(chunk.records)

    @contextlib.contextmanager
    def _naming_target(self) -> Iterator[None]:
        """A full disk's error named by the output file, as ``atomic_write_bytes`` names it (an fd's
        error names no file: "unexpected OSError: [Errno 28] No space left on device")."""
        try:
            yield
        except OSError as exc:
            if exc.errno is None or exc.filename is not None:
                raise
            raise type(exc)(exc.errno, exc.strerror, str(self.target)) from exc

    def _line_end(self, table: pd.DataFrame, chunk: PredictedChunk) -> str:
        """The file's CSV line ending, as ``write_predictions`` picks it for the whole table: "\\r\\n"
        where a text holds a "\\r" (``csv_lines``), else "\\n".

        The first chunk knows every input cell of the file (``input_values``), so a "\\r" in a later
        row's text makes the whole file "\\r\\n" from its first line, as the whole-table writer has
        it. Only a prediction field's "\\r" (a plug-in task's) in a later chunk comes too late: the
        file goes on in "\\r\\n" from that chunk, its earlier lines kept, each record one row still.
        """
        if self.line_end != "\r\n":
            newline = frame_line_end(table)
            if self.line_end is None and newline == "\n":
                newline = line_end(v for name in chunk.input_types for v in chunk.input_values(name))
            self.line_end = newline
        return self.line_end

    def _check(self, table: pd.DataFrame, echoed: Container[str]) -> None:
        """Refuse a chunk whose columns, or prediction fields' dtypes, are not the first chunk's.

        The input's columns are typed from the whole file (``_typed``), but a prediction field's type
        is known only once predicted: it is the first chunk's. The built-in tasks give every text
        the same fields of the same types, so that is the whole table's. A plug-in task whose fields
        change from a chunk on (a new field, an int then a float) would change how the rows already
        written are typed (a CSV header, 1 -> 1.0): refused rather than written otherwise than whole.
        A field null in every row of a chunk fits any type.
        """
        fields = {str(c): table[c].dtype for c in table.columns if c not in echoed}
        if self.first is None:
            self.first = [str(c) for c in table.columns], fields
        columns, first = self.first
        changed = [c for c, dtype in fields.items() if first.get(c) != dtype and table[c].notna().any()]
        if [str(c) for c in table.columns] != columns or changed:
            odd = sorted(set(map(str, table.columns)) ^ set(columns)) + changed
            raise RunError(
                f"the run's task gave field(s) {', '.join(map(repr, odd))} from output row {self.rows + 1} "
                "on unlike the rows before (a missing or new field, another type); a file of predictions "
                "needs the same fields for every text (a plug-in task's decode)"
            )

    def _write_parquet(self, chunk: PredictedChunk) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = self._typed(prediction_table(chunk.records, chunk.input_types), chunk)
        self._check(table, chunk.input_types)
        if self.schema is None:  # pandas' own types for the others, as _parquet_schema has them
            own = pa.Schema.from_pandas(table.drop(columns=list(self.chosen)), preserve_index=False)
            chosen = self.chosen
            self.schema = pa.schema([pa.field(c, chosen[c]) if c in chosen else own.field(c) for c in table])
        # through pandas' to_parquet, as write_predictions writes the whole table (its conversion, its
        # metadata: this chunk's dtypes, the whole table's after _typed), then one row group of the file
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False, schema=self.schema)
        arrow = pq.read_table(pa.BufferReader(buffer.getbuffer()))
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.handle, arrow.schema, compression="snappy")
        self.parquet.write_table(arrow)

    def _typed(self, table: pd.DataFrame, chunk: PredictedChunk) -> pd.DataFrame:
        """``table`` with each input column in its dtype in the whole table, as text where the whole
        column is written as text.

        ``_parquet_schema`` types an input column from all its values (an id column with a null
        only in row 9,000: ints; an int column with a text further on: text), and pandas' metadata
        names the whole column's dtype (one null in the first chunk alone: object there). The input
        is in memory, so both are decided from its whole column, with the first chunk.
        """
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        if self.echoed is None:
            self.echoed = {}
            text_dtype = pd.Series([""]).dtype  # pandas' dtype for text: str (pandas 3) or object
            for name, known in chunk.input_types.items():
                if name not in table.columns:
                    continue
                values = chunk.input_values(name)
                # as frame_keeping_types: object unless every value is text (nulls only: object too)
                is_text = pd.api.types.infer_dtype(values, skipna=True) == "string"
                dtype = text_dtype if is_text else np.dtype(object)
                if known is None and is_text and dtype != np.dtype(object):  # pandas' own type, as there
                    self.echoed[name] = dtype, False
                    continue
                arrow_type = _arrow_type(values, known)
                self.echoed[name] = (dtype, False) if arrow_type else (text_dtype, True)
                self.chosen[name] = arrow_type or pa.large_string()
        for name, (dtype, as_text) in self.echoed.items():
            if as_text:
                table[name] = pd.Series([_csv_cell(v) for v in table[name].tolist()], table.index, dtype)
            elif table[name].dtype != dtype:
                table[name] = table[name].astype(dtype)
        return table

    def _finish(self) -> None:
        try:
            self._publish()
        except FileExistsError:
            # checked when the command began; another process (a second `predict --output` of the
            # same file) wrote it since, and its finished file was replaced without a word
            raise DataError(
                f"{self.target} was written by another process while these predictions were made; "
                "give --overwrite (API: overwrite=True) to replace it, or another file"
            ) from None

    def _publish(self) -> None:
        if not self.rows:  # no row to predict (refused while read): as the whole-table writer has it
            write_predictions([], self.target, self.fmt, new=not self.overwrite)
            return
        if self.parquet is not None:
            self.parquet.close()  # its footer; the handle, not pyarrow's, stays open
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        if self.overwrite:
            os.replace(self.tmp, self.target)
        else:
            rename_new(self.tmp, self.target)
