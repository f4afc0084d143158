"""Predict a whole file: CSV/TSV/JSONL/Parquet/Excel in, CSV, JSONL or Parquet out by the output's extension.

Each output row is one input row: the input's own columns, its row number in the file (``row``),
the text classified (``text``, and ``text_pair`` for a pair run), and the prediction (``label``,
``score``, ``top_k``, or what the run's task returns). An input column whose name a prediction
field uses (a ``label`` column in a labelled test file, say) is kept as ``<name>_input``.

JSON lines keep ``top_k`` (and multi-label ``labels``/``scores``, NER ``entities``) nested. CSV and
Parquet are flat tables people open in a spreadsheet or in pandas: the top-k become columns
``top_1_label``, ``top_1_score``, ``top_2_label``, ... and any other nested value is JSON text.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.atomic import atomic_write_bytes, atomic_write_text
from tunelab.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from tunelab.inference.predictor import Predictor

# Output extension -> how the table is written. ``.json`` is not here: a reader expects one JSON
# document in it, not JSON lines.
# The columns prediction_table flattens ``top_k`` into: an input column of that shape (an earlier
# predictions file) would otherwise be overwritten, or kept under the new prediction's name.
FLAT_TOP_K = re.compile(r"top_\d+_(label|score)")

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


def output_format(path: str | Path, *, overwrite: bool = False) -> str:
    """The format an output file is written in, checked before any model is loaded.

    Raises:
        DataError: the extension is not one of ``OUTPUT_FORMATS``, or the file exists and
            ``overwrite`` is False.
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
    return fmt


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
    later number.
    """
    from tunelab.data import read_texts
    from tunelab.data.file_options import options_for_file, parse_file_overrides

    cfg = options_for_file(input_path, predictor.config.data, options)
    given = options if isinstance(options, dict) else parse_file_overrides(options)
    texts, pairs, frame = read_texts(input_path, cfg, text_column_given="text_column" in given)
    results = predictor.predict(texts, pairs, top_k=top_k, batch_size=batch_size) if texts else []
    text_col = cfg.text_column if cfg.text_column in frame.columns else "text"
    own = {"text": text_col, "text_pair": cfg.text_pair_column}
    records = []
    names: dict[tuple[str, ...], dict[str, str]] = {}
    for i, (text, result) in enumerate(zip(texts, results, strict=True)):
        fields: dict[str, Any] = {"row": int(frame.index[i]), "text": text}
        if pairs is not None:  # a text-pair run: the second text beside the first
            fields["text_pair"] = pairs[i]
        fields |= result
        key = tuple(fields)
        if key not in names:
            names[key] = _input_names([str(c) for c in frame.columns], fields, own)
        rename = names[key]
        record = {rename[str(c)]: None if _missing(v) else v for c, v in frame.iloc[i].items()}
        records.append(record | fields)
    return records


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


def prediction_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The flat table CSV and Parquet get: top-k as columns, other nested values as JSON text."""
    import pandas as pd

    rows = []
    for record in records:
        row: dict[str, Any] = {}
        for key, value in record.items():
            if key == "top_k" and isinstance(value, list):
                for rank, item in enumerate(value, start=1):
                    row[f"top_{rank}_label"] = item.get("label")
                    row[f"top_{rank}_score"] = item.get("score")
            elif isinstance(value, list | dict):
                row[key] = json.dumps(value, ensure_ascii=False, default=str)
            else:
                row[key] = value
        rows.append(row)
    return pd.DataFrame(rows)


def write_predictions(records: list[dict[str, Any]], output_path: str | Path, fmt: str) -> None:
    """Write ``records`` in ``fmt`` to a temporary sibling, then rename it over ``output_path``."""
    if fmt == "jsonl":
        lines = (json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
        atomic_write_text(output_path, "".join(lines))
        return
    table = prediction_table(records)
    if fmt in ("csv", "tsv"):
        atomic_write_text(output_path, table.to_csv(index=False, sep="\t" if fmt == "tsv" else ","))
        return
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    atomic_write_bytes(output_path, buffer.getvalue())


def predict_file(
    predictor: Predictor,
    input_path: str | Path,
    output_path: str | Path,
    *,
    top_k: int = 3,
    batch_size: int = 64,
    options: list[str] | dict[str, Any] | None = None,
    overwrite: bool = False,
) -> int:
    """Predict every row of ``input_path`` and write the predictions to ``output_path``.

    The output's extension picks its format: ``.csv``, ``.tsv``, ``.jsonl`` or ``.parquet`` (see the
    module docstring for the columns). The file appears only when complete (written under a
    temporary name, then renamed).

    Args:
        predictor: a loaded run (``tunelab.load``).
        input_path: a CSV/TSV/JSONL/Parquet file with the run's text column (or ``text``).
        output_path: where the predictions go; an existing file is refused unless ``overwrite``.
        top_k: how many ranked labels each row gets.
        batch_size: texts per forward pass.
        options: ``data.*=value`` reading options for the input file.
        overwrite: replace an existing ``output_path``.

    Returns:
        The number of rows predicted.

    Raises:
        DataError: an unknown output extension, an existing output file, or an unreadable input.
    """
    fmt = output_format(output_path, overwrite=overwrite)
    if Path(output_path).exists() and _same_file(input_path, output_path):
        # with --overwrite the input was replaced by its predictions: rows dropped for an empty
        # text gone for good, a "label" column renamed label_input
        raise DataError(f"--output {output_path} is the --input file; write the predictions to another file")
    records = prediction_records(predictor, input_path, top_k=top_k, batch_size=batch_size, options=options)
    write_predictions(records, output_path, fmt)
    return len(records)


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _missing(value: Any) -> bool:
    """A NaN/None cell (pandas reads an empty CSV cell as NaN); lists and text are never missing."""
    return value is None or (isinstance(value, float) and value != value)
