"""Predict a whole file: CSV/TSV/JSONL/Parquet in, JSONL out (one result per input row)."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.atomic import atomic_write_text
from tunelab.data import read_texts
from tunelab.predict.predictor import Predictor


def predict_file(
    predictor: Predictor,
    input_path: str | Path,
    output_path: str | Path,
    *,
    top_k: int = 3,
    batch_size: int = 64,
) -> int:
    """Read the run's text column from ``input_path`` and write predictions as JSONL.

    Each output line carries the input row number, the text and the prediction; an ``id`` column
    in the input is copied through so results can be joined back. The output file appears only
    when complete.

    Returns:
        The number of rows predicted.
    """
    texts, pairs, frame = read_texts(input_path, predictor.config.data)
    results = predictor.predict(texts, pairs, top_k=top_k, batch_size=batch_size) if texts else []
    ids = frame["id"].tolist() if "id" in frame.columns else None
    lines = []
    for row, (text, result) in enumerate(zip(texts, results, strict=True)):
        record = {"row": row + 1, "text": text, **result}
        if ids is not None:
            record = {"id": ids[row], **record}
        lines.append(json.dumps(record, ensure_ascii=False, default=str))
    atomic_write_text(output_path, "".join(line + "\n" for line in lines))
    return len(lines)
