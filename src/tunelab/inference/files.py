"""Predict a whole file: CSV/TSV/JSONL/Parquet/Excel in, CSV, JSONL or Parquet out by the output's extension.

Each output row is one input row: the input's own columns, its row number in the file (``row``),
the text as the file gives it (``text``, and ``text_pair`` for a pair run; surrounding whitespace
kept, so NER offsets point into it), and the prediction (``label``, ``score``, ``top_k``, or what
the run's task returns). An input column whose name a prediction field uses (a ``label`` column in
a labelled test file, say) is kept as ``<name>_input``.

JSON lines keep ``top_k`` (and multi-label ``labels``/``scores``, NER ``entities``) nested. CSV and
Parquet are flat tables people open in a spreadsheet or in pandas: the top-k become columns
``top_1_label``, ``top_1_score``, ``top_2_label``, ... and any other nested value is JSON text.

The input's own columns keep the types their file gave them: a Parquet or JSON lines id 7 is 7 and
a null is null (JSON null, a Parquet null, an empty CSV cell), not "7" and "". A Parquet input's
columns keep their Parquet types in Parquet output; JSON objects become JSON text there, as nested
prediction fields do. CSV, TSV and Excel cells are text and stay text ("007" keeps its zeros).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from tunelab.atomic import atomic_write_bytes, atomic_write_text
from tunelab.csv_lines import frame_line_end
from tunelab.errors import DataError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    import pandas as pd
    import pyarrow as pa

    from tunelab.config import DataConfig
    from tunelab.inference.predictor import Predictor

log = logging.getLogger(__name__)

# Output extension -> how the table is written. ``.json`` is not here: a reader expects one JSON
# document in it, not JSON lines.
# The columns prediction_table flattens ``top_k`` into: an input column of that shape (an earlier
# predictions file) would otherwise be overwritten, or kept under the new prediction's name.
FLAT_TOP_K = re.compile(r"top_\d+_(label|score)")

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


def output_format(path: str | Path, *, overwrite: bool = False) -> str:
    """The format an output file is written in, checked before any model is loaded.

    Raises:
        DataError: the extension is not one of ``OUTPUT_FORMATS``, the file exists and
            ``overwrite`` is False, or its folder cannot be written in.
    """
    p = Path(path)
    fmt = OUTPUT_FORMATS.get(p.suffix.lower())
    if fmt is None:
        known = ", ".join(OUTPUT_FORMATS)
        kind = repr(p.suffix) if p.suffix else "a file without an extension"
        raise DataError(
            f"{p}: cannot write predictions as {kind}; end the output file name with one of {known}"
        )
    if p.is_dir():
        raise DataError(f"{p} is a folder; give a file name such as {p / 'predictions.csv'}")
    for parent in p.parents:  # else an "unexpected FileExistsError" after every prediction was made
        if parent.exists() and not parent.is_dir():
            raise DataError(f"{p}: {parent} is a file, not a folder; give another output file")
    if p.exists() and not overwrite:
        raise DataError(f"{p} exists; give --overwrite (API: overwrite=True) to replace it, or another file")
    from tunelab.preflight import check_writable

    check_writable(p, "--output", error=DataError)  # else it failed after every prediction was made
    return fmt


#: Rows predicted and written at a time by ``predict_file`` (predicted at a time by
#: ``Predictor.predict(Path)``). The input is read whole: its frame is small beside what predicting
#: it whole held at once (every text tokenised, a result dict, an output record and a table row per
#: row, the output table and its CSV text: 3.5 GB for 200,000 rows of 30-80 words with the tiny
#: test model). A chunk this size keeps the forward batches as full as before.
CHUNK_ROWS = 8192


class PredictedChunk(NamedTuple):
    """One chunk's output records; the input columns' output names with their Parquet types (see
    ``_records_and_input_types``); and ``input_values``: an input column's value in every kept row
    of the file, by output name, for Parquet output to type the column as the whole table did."""

    records: list[dict[str, Any]]
    input_types: dict[str, pa.DataType | None]
    input_values: Callable[[str], list[Any]]


def prediction_records(
    predictor: Predictor,
    input_path: str | Path,
    *,
    top_k: int = 3,
    batch_size: int = 64,
    options: list[str] | dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One record per kept input row: the input's columns, ``row``, ``text`` and the prediction.

    The file is read with its own separator, header and encoding, detected or given in
    ``options`` (``data.*=value`` items), not with those of the run's training file. ``row`` is the
    row's number in the file (data rows counted from 1, the header line not counted; for JSON
    lines the line number), so rows dropped for empty text leave a gap instead of shifting every
    later number. The input's columns keep their file's types (see the module docstring).
    """
    records, _ = _records_and_input_types(predictor, input_path, top_k, batch_size, options)
    return records


def _records_and_input_types(
    predictor: Predictor,
    input_path: str | Path,
    top_k: int,
    batch_size: int,
    options: list[str] | dict[str, Any] | None,
) -> tuple[list[dict[str, Any]], dict[str, pa.DataType | None]]:
    """``prediction_records``, and each input column's output name with its Parquet type (None
    where the file has no column types), so that Parquet output can write the same types."""
    records: list[dict[str, Any]] = []
    input_types: dict[str, pa.DataType | None] = {}
    for chunk in _prediction_chunks(predictor, input_path, top_k, batch_size, options):
        records.extend(chunk.records)
        input_types = chunk.input_types
    return records, input_types


def _prediction_chunks(
    predictor: Predictor,
    input_path: str | Path,
    top_k: int,
    batch_size: int,
    options: list[str] | dict[str, Any] | None,
    progress: Any = None,
    truncated: list[int] | None = None,
) -> Iterator[PredictedChunk]:
    """The records of ``input_path``'s kept rows, predicted ``CHUNK_ROWS`` rows at a time.

    The file is read whole by ``read_texts`` (its checks, row numbers and messages); only the
    predictions and the output records are made a chunk at a time, so that no more than a chunk's
    are held. ``progress``: a tqdm bar, given the number of rows to predict and each chunk's.
    ``truncated``: [texts longer than ``max_length`` tokens, texts], added to as the chunks go (for a
    task that truncates; one that reads long texts in windows adds nothing).
    """
    from tunelab.data import read_texts
    from tunelab.data.file_options import options_for_file, parse_file_overrides
    from tunelab.data.summary import longer_than

    cfg = options_for_file(input_path, predictor.config.data, options)
    given = parse_file_overrides(options)  # a dict's keys as the list's: data.text_column too
    texts, pairs, frame = read_texts(input_path, cfg, text_column_given="text_column" in given)
    text_col = cfg.text_column if cfg.text_column in frame.columns else "text"
    own = {"text": text_col, "text_pair": cfg.text_pair_column}
    rows = [int(r) for r in frame.index]
    # The text columns as the model read them; every other column as its file typed it.
    typed = _typed_cells(input_path, cfg, rows)
    cells, types = typed if typed is not None else (None, {})
    read_as_text = {text_col, cfg.text_pair_column}
    columns = [str(c) for c in frame.columns]
    input_types: dict[str, pa.DataType | None] = {}
    names: dict[tuple[str, ...], dict[str, str]] = {}
    source: dict[str, str] = {}  # an input column by its output name

    def input_values(name: str) -> list[Any]:
        column = source[name]
        if cells is not None and column not in read_as_text:
            return [_plain(cells[row].get(column)) for row in rows]
        return [_plain(value) for value in frame[column].tolist()]

    if progress is not None:
        progress.reset(total=len(rows))
    for start in range(0, len(rows), CHUNK_ROWS):
        part = frame.iloc[start : start + CHUNK_ROWS]
        # ``texts`` are stripped (so the reader can tell an empty one); the output echoes each text as
        # the file gives it, which the "text" field replaced when the column is called text.
        given_texts = [str(t) for t in part[text_col]]
        given_pairs = [str(t) for t in part[cfg.text_pair_column]] if pairs is not None else None
        read = texts[start : start + CHUNK_ROWS]
        if predictor.task.output == "entities":
            # Entities are character offsets into the text the model read: into a stripped copy they
            # missed the echoed text by its leading whitespace. Words never hold whitespace, so the
            # entities are the same; only their offsets move, now into the text as given, as the
            # HTTP service and ``Predictor.predict`` give them.
            read = given_texts
        # A classifier keeps reading the stripped text, as it was trained (the bundled tokenizers
        # ignore surrounding whitespace, checked for MiniLM's and e5-small-multilingual's; a custom
        # tokenizer might not).
        chunk_pairs = pairs[start : start + CHUNK_ROWS] if pairs is not None else None
        results = _predict_chunk(predictor, read, chunk_pairs, top_k, batch_size, start)
        if truncated is not None and not predictor.task.uses_stride:
            truncated[0] += longer_than(
                predictor.tokenizer, read, chunk_pairs, predictor.config.model.max_length
            )
            truncated[1] += len(read)
        records = []
        for i, values in enumerate(part.to_dict("records")):
            row = rows[start + i]
            fields: dict[str, Any] = {"row": row, "text": given_texts[i]}
            if given_pairs is not None:  # a text-pair run: the second text beside the first
                fields["text_pair"] = given_pairs[i]
            fields |= results[i]
            key = tuple(fields)
            if key not in names:
                names[key] = _input_names(columns, fields, own)
                for column in columns:
                    source.setdefault(names[key][column], column)
                    kind = None if column in read_as_text else types.get(column)
                    input_types.setdefault(names[key][column], kind)
            rename = names[key]
            record = {}
            for column, value in zip(columns, values.values(), strict=True):
                if cells is not None and column not in read_as_text:
                    value = cells[row].get(column)  # a key a JSON line lacks is null, as pandas read it
                record[rename[column]] = _plain(value)
            records.append(record | fields)
        if progress is not None:
            progress.update(len(records))
        yield PredictedChunk(records, input_types, input_values)


_POSITION = re.compile(r"(text|text_pairs) (\d+):")


def _predict_chunk(
    predictor: Predictor,
    texts: list[str],
    pairs: list[str] | None,
    top_k: int,
    batch_size: int,
    before: int,
) -> list[dict[str, Any]]:
    """``predictor.predict`` on one chunk; a text it refuses is named by its position among all the
    file's kept texts, as when the whole file was one call (``before`` kept texts precede)."""
    try:
        results = predictor.predict(texts, pairs, top_k=top_k, batch_size=batch_size)
    except DataError as exc:
        message = str(exc)
        found = _POSITION.match(message)
        if found is None or not before:
            raise
        raise DataError(f"{found[1]} {int(found[2]) + before}:{message[found.end() :]}") from None
    assert isinstance(results, list)
    return results


def _typed_cells(
    path: str | Path, cfg: DataConfig, rows: Iterable[int]
) -> tuple[dict[int, dict[str, Any]], dict[str, pa.DataType]] | None:
    """``rows``' cells as a Parquet or JSON lines file types them, by row number, and Parquet's
    column types; None for CSV, TSV and Excel, whose cells are text.

    ``read_table`` reads every cell as text, as the model and the labels need (a label "0" must
    not become 0); echoed as that, an id 7 came back "7" and a null "" or "nan". So the file is
    read again here with its types, numbered as ``read_table`` numbers it (Parquet: rows from 1;
    JSON lines: the line number, blank lines counted; a JSON array: the item number), and column
    names stripped of spaces as there.
    """
    from tunelab.data.readers import AUTO_ENCODING, detect_encoding, detect_format, json_records

    p = Path(path)
    fmt = detect_format(p, cfg)
    wanted = list(rows)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        whole = pq.read_table(p)
        table = whole.take(pa.array([r - 1 for r in wanted], pa.int64()))
        names = [str(n).strip() for n in table.column_names]
        columns = [column.to_pylist() for column in table.columns]
        cells = {
            row: {n: column[j] for n, column in zip(names, columns, strict=True)}
            for j, row in enumerate(wanted)
        }
        types = {n: field.type for n, field in zip(names, table.schema, strict=True)}
        # A named RangeIndex (df.set_index("ticket_id") on ids 7, 8, 9) is no column of the file,
        # only start/stop/step in its pandas metadata: read_table made it a column, so rebuild it.
        for name, start, step in _range_indexes(whole.schema):
            if name not in types:
                for row in wanted:
                    cells[row][name] = start + (row - 1) * step
                types[name] = pa.int64()
        return cells, types
    if fmt != "jsonl":
        return None
    encoding = detect_encoding(p) if cfg.encoding.lower() == AUTO_ENCODING else cfg.encoding
    keep = set(wanted)
    # read a line at a time, as read_table reads it (and numbered as there): the whole text and its
    # lines held beside the parsed rows were several times the file
    records = json_records(p, encoding)
    cells = {n: {str(k).strip(): v for k, v in record.items()} for _, n, record in records if n in keep}
    return cells, {}


def _range_indexes(schema: pa.Schema) -> list[tuple[str, int, int]]:
    """Each named RangeIndex a pandas-written Parquet file records only in its metadata: its name
    (stripped, as ``read_table`` strips column names), start and step."""
    try:
        meta = json.loads((schema.metadata or {}).get(b"pandas", b"{}"))
        indexes = meta.get("index_columns", []) if isinstance(meta, dict) else []
    except ValueError:  # not JSON: no pandas metadata to go by
        return []
    found = []
    for index in indexes:
        if not isinstance(index, dict) or index.get("kind") != "range" or index.get("name") is None:
            continue
        start, step = index.get("start", 0), index.get("step", 1)
        if isinstance(start, int) and isinstance(step, int):
            found.append((str(index["name"]).strip(), start, step))
    return found


def _input_names(columns: list[str], fields: dict[str, Any], own: dict[str, str | None]) -> dict[str, str]:
    """Each input column's name in the output: ``<name>_input`` where it clashes with an output column.

    An output column is a prediction field (``label``, ``score``, ``top_k``, ...) or a flattened
    ``top_N_label``/``top_N_score``, so re-scoring an earlier predictions file keeps every old value,
    under ``*_input``, in every format. The input's text column named ``text`` is what ``text``
    says already and keeps its name. ``_input`` is appended again while the name is taken.
    """
    taken = set(columns) | set(fields)
    out = {}
    for column in columns:
        clash = (column in fields and own.get(column) != column) or FLAT_TOP_K.fullmatch(column)
        name = column
        if clash:
            name = f"{column}_input"
            while name in taken:
                name += "_input"
            taken.add(name)
        out[column] = name
    return out


def prediction_table(records: list[dict[str, Any]], echoed: Iterable[str] = ()) -> pd.DataFrame:
    """The flat table CSV and Parquet get: top-k as columns, other nested values as JSON text.

    ``echoed`` names the input's own columns. One that holds anything but text is kept as Python
    objects (dtype object), its nested values as they are: a DataFrame would turn an int column
    with a null into floats (7 -> 7.0); the writers then type it (Parquet) or write it as text (CSV).
    """

    echoed = set(echoed)
    rows = []
    for record in records:
        row: dict[str, Any] = {}
        for key, value in record.items():
            if key in echoed:
                row[key] = value
            elif key == "top_k" and isinstance(value, list):
                for rank, item in enumerate(value, start=1):
                    row[f"top_{rank}_label"] = item.get("label")
                    row[f"top_{rank}_score"] = item.get("score")
            elif isinstance(value, list | dict):
                row[key] = json.dumps(value, ensure_ascii=False, default=str)
            else:
                row[key] = value
        rows.append(row)
    return frame_keeping_types(rows, echoed)


def frame_keeping_types(rows: list[dict[str, Any]], echoed: Iterable[str]) -> pd.DataFrame:
    """``rows`` as a DataFrame whose ``echoed`` (input) columns holding anything but text keep their
    values as Python objects: pandas would turn an int column with a null into floats (7 -> 7.0)."""
    import pandas as pd

    table = pd.DataFrame(rows)
    for column in set(echoed) & set(table.columns):
        values = [row.get(column) for row in rows]
        if any(v is not None and not isinstance(v, str) for v in values):
            table[column] = pd.Series(values, index=table.index, dtype=object)
    return table


def write_predictions(
    records: list[dict[str, Any]],
    output_path: str | Path,
    fmt: str,
    input_types: Mapping[str, pa.DataType | None] | None = None,
    *,
    new: bool = False,
) -> None:
    """Write ``records`` in ``fmt`` to a temporary sibling, then rename it over ``output_path``
    (``new``: onto no file only, ``atomic.rename_new``).

    ``input_types``: the input's columns by output name, with their Parquet type where the input
    had one, so that they keep their types (see ``prediction_table``); None: no column is the input's.
    """
    if fmt == "jsonl":
        atomic_write_text(output_path, jsonl_text(records), new=new)
        return
    input_types = input_types or {}
    if fmt in ("csv", "tsv"):
        table = csv_table(records, input_types)
        # "\r\n" where a text holds a "\r", else it was written bare and split its row (csv_lines)
        text = table.to_csv(index=False, sep=SEPARATORS[fmt], lineterminator=frame_line_end(table))
        atomic_write_text(output_path, text, new=new)
        return
    table = prediction_table(records, input_types)
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False, schema=_parquet_schema(table, input_types))
    atomic_write_bytes(output_path, buffer.getvalue(), new=new)


SEPARATORS = {"csv": ",", "tsv": "\t"}


def jsonl_text(records: list[dict[str, Any]]) -> str:
    """``records`` as JSON lines, nested values kept."""
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)


def csv_table(records: list[dict[str, Any]], input_types: Mapping[str, pa.DataType | None]) -> pd.DataFrame:
    """``prediction_table`` with the input's columns as CSV holds them: text, nested values as JSON
    text, a null an empty cell."""
    table = prediction_table(records, input_types)
    for column in input_types:
        if column in table.columns:
            table[column] = table[column].map(_csv_cell)
    return table


def _parquet_schema(table: pd.DataFrame, input_types: Mapping[str, pa.DataType | None]) -> pa.Schema | None:
    """The Parquet schema: pandas' own for the prediction and text columns, and for each kept input
    column its input's Parquet type, else the type its values have (ints with a null stay ints);
    a column no one type fits (JSON objects, a mix such as 7 and "x") is written as text.

    ``table``'s columns that are written as text are replaced in place. None: pandas' own for all.
    """
    import pyarrow as pa

    chosen: dict[str, pa.DataType] = {}
    for column, known in input_types.items():
        if column not in table.columns or (known is None and table[column].dtype != object):
            continue  # text only (a CSV's columns): written as before
        values = table[column].tolist()
        arrow_type = _arrow_type(values, known)
        if arrow_type is None:
            table[column] = [_csv_cell(v) for v in values]
            arrow_type = pa.large_string()
        chosen[column] = arrow_type
    if not chosen:
        return None
    rest = pa.Schema.from_pandas(table.drop(columns=list(chosen)), preserve_index=False)
    # pandas writes its own metadata (dtypes for pd.read_parquet) for these types too
    return pa.schema([pa.field(c, chosen[c]) if c in chosen else rest.field(str(c)) for c in table.columns])


def _arrow_type(values: list[Any], known: pa.DataType | None) -> pa.DataType | None:
    """The input's Parquet type if the values still fit it, else the type pyarrow infers for them
    unless they hold a JSON object (inferred as a struct, ``{"a": 1}`` and ``{"b": 2}`` would both
    gain the other's key as null); None: write them as text."""
    import pyarrow as pa

    tries: list[pa.DataType | None] = [known] if known is not None else []
    if not any(_holds_dict(v) for v in values):
        tries.append(None)
    for arrow_type in tries:
        try:
            return pa.array(values, type=arrow_type, from_pandas=True).type
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            continue
    return None


def _holds_dict(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    return isinstance(value, list | tuple) and any(_holds_dict(v) for v in value)


def _csv_cell(value: Any) -> Any:
    """A kept input cell as text: nested values as JSON text, others as ``str`` writes them, None kept
    (an empty CSV cell, a Parquet null)."""
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    if value is None or (isinstance(value, float) and value != value):  # a gap pandas holds as NaN
        return None
    return value if isinstance(value, str) else str(value)


def predict_file(
    predictor: Predictor | str | os.PathLike[str],
    input_path: str | Path,
    output_path: str | Path,
    *,
    top_k: int = 3,
    batch_size: int = 64,
    options: list[str] | dict[str, Any] | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> int:
    """Predict every row of ``input_path`` and write the predictions to ``output_path``.

    The output's extension picks its format: ``.csv``, ``.tsv``, ``.jsonl`` or ``.parquet`` (see the
    module docstring for the columns). The file appears only when complete (written under a
    temporary name, then renamed). The rows are predicted and written ``CHUNK_ROWS`` at a time
    (``chunked_output``), so that memory holds one chunk's predictions, not the whole file's.

    Args:
        predictor: a loaded run (``tunelab.load``), or a run or artifact folder to load, as
            ``tunelab.predict`` takes it.
        input_path: a CSV/TSV/JSONL/Parquet file with the run's text column (or ``text``).
        output_path: where the predictions go; an existing file is refused unless ``overwrite``.
        top_k: how many ranked labels each row gets.
        batch_size: texts per forward pass.
        options: ``data.*=value`` reading options for the input file.
        overwrite: replace an existing ``output_path``.
        show_progress: a progress bar of the rows predicted on stderr, when that is a terminal.

    Returns:
        The number of rows predicted.

    Raises:
        ConfigError: ``top_k`` or ``batch_size`` is not a whole number of 1 or more.
        DataError: an unknown output extension, an existing output file, or an unreadable input.
        RunError: ``predictor`` is a path that is no finished run, or neither a path nor a Predictor.
    """
    from tqdm.auto import tqdm

    from tunelab.inference.chunked_output import ChunkedOutput
    from tunelab.inference.predictor import Predictor, _check_batch_size, _check_top_k

    # checked before any reading: an empty input never reached predict(), which checks them too
    top_k = _check_top_k(top_k)  # as ints: a numpy integer is a whole number too
    batch_size = _check_batch_size(batch_size)
    # "~/p.csv" (quoted, or from a script) is the home folder's, as for eval --data and export
    # --output: it wrote ./~/p.csv, and an input so named was "file not found"
    input_path, output_path = expand_home(input_path), expand_home(output_path)
    fmt = output_format(output_path, overwrite=overwrite)
    if Path(output_path).exists() and _same_file(input_path, output_path):
        # with --overwrite the input was replaced by its predictions: rows dropped for an empty
        # text gone for good, a "label" column renamed label_input
        raise DataError(f"--output {output_path} is the --input file; write the predictions to another file")
    if not isinstance(predictor, Predictor):  # a path, as tunelab.predict takes (it failed on .config)
        predictor = Predictor.load(predictor)  # a non-path is a one-line RunError (find_run)
    # disable=None: tqdm draws only on a terminal (a pipe or a log file gets no bar lines)
    bar = tqdm(unit="rows", desc="predict", dynamic_ncols=True, disable=None if show_progress else True)
    truncated = [0, 0]
    with bar, ChunkedOutput(Path(output_path), fmt, overwrite=overwrite) as output:
        for chunk in _prediction_chunks(predictor, input_path, top_k, batch_size, options, bar, truncated):
            output.write(chunk)
    if truncated[0]:
        from tunelab.data.summary import truncation_note

        max_length = predictor.config.model.max_length
        log.warning("%s", truncation_note(Path(input_path).name, truncated[0], truncated[1], max_length))
    return output.rows


def expand_home(path: str | Path) -> str | Path:
    """``path`` with a leading ``~`` made the home folder (``os.path.expanduser``: ``~nobody`` that
    names no user stays as it is), its type kept."""
    expanded = os.path.expanduser(path)
    return Path(expanded) if isinstance(path, Path) else expanded


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _plain(value: Any) -> Any:
    """A cell with NaN as None, nested too: JSON has no NaN (json.dumps writes an invalid ``NaN``)."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
