"""Predict a whole file: CSV/TSV/JSONL/Parquet in, JSONL out (one result per input row)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_text
from tunelab.data import read_texts
from tunelab.data.file_options import options_for_file
from tunelab.inference.predictor import Predictor


def predict_file(
    predictor: Predictor,
    input_path: str | Path,
    output_path: str | Path,
    *,
    top_k: int = 3,
    batch_size: int = 64,
    options: list[str] | dict[str, Any] | None = None,
) -> int:
    """Read the run's text column from ``input_path`` and write predictions as JSONL.

    The file is read with its own separator, header and encoding, detected or given in
    ``options`` (``data.*=value`` items), not with those of the run's training file. Each output
    line carries the input's row number in the file (``row``: data rows counted from 1, the header
    line not counted; for JSON lines the line number), so rows dropped for empty text leave a gap
    instead of shifting every later number; an ``id`` column in the input is copied through so
    results can be joined back. The output file appears only when complete.

    Returns:
        The number of rows predicted.
    """
    cfg = options_for_file(input_path, predictor.config.data, options)
    texts, pairs, frame = read_texts(input_path, cfg)
    results = predictor.predict(texts, pairs, top_k=top_k, batch_size=batch_size) if texts else []
    ids = frame["id"].tolist() if "id" in frame.columns else None
    rows = [int(r) for r in frame.index]  # the row numbers in the file, gaps where rows were dropped
    lines = []
    for i, (text, result) in enumerate(zip(texts, results, strict=True)):
        record: dict[str, Any] = {} if ids is None else {"id": ids[i]}
        record |= {"row": rows[i], "text": text}
        if pairs is not None:  # a text-pair run: the second text beside the first
            record["text_pair"] = pairs[i]
        record |= result
        lines.append(json.dumps(record, ensure_ascii=False, default=str))
    atomic_write_text(output_path, "".join(line + "\n" for line in lines))
    return len(lines)
