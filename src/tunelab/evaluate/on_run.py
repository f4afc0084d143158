"""``evaluate(run, data)``: score a finished run on a labelled file and write a report for it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_json
from tunelab.errors import ConfigError


def evaluate(
    run: str | Path,
    data: str | Path | None = None,
    *,
    out_dir: str | Path | None = None,
    batch_size: int = 64,
    options: list[str] | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a finished run on ``data``: the run's column names, the file's own layout.

    ``data`` is read with its own separator, header and encoding, detected or given in ``options``
    (``["data.separator=@", "data.header=false", "data.column_names=[sentence,label]"]``), never
    with those of the run's training file (see :func:`tunelab.data.file_options.options_for_file`).
    With ``data`` None the run's own test file (or dev split) metrics are returned as saved. The
    metrics, ``report.md``, ``report.html`` and plots go to ``out_dir`` (default
    ``<run>/evals/<data file stem>/``).

    Returns:
        The metrics dict, with ``report`` set to the HTML report's path.
    """
    from tunelab.data import load_labelled
    from tunelab.data.file_options import options_for_file, parse_file_overrides
    from tunelab.evaluate.report import write_report
    from tunelab.evaluate.scoring import score_logits
    from tunelab.predict import load

    given = options if isinstance(options, dict) else parse_file_overrides(options)  # before loading
    predictor = load(run)
    assert predictor.run is not None
    if data is None:
        if given:
            raise ConfigError("data.* reading options need a file to read: give --data FILE")
        saved = json.loads(predictor.run.metrics_json.read_text(encoding="utf-8"))
        return saved.get("test") or saved.get("dev") or {}
    dataset = load_labelled(data, options_for_file(data, predictor.config.data, given), predictor.labels)
    predictor.check_pairs(dataset.texts, dataset.text_pairs)  # logits takes any kind of input
    logits = predictor.logits(dataset.texts, dataset.text_pairs, batch_size=batch_size)
    metrics, _ = score_logits(
        logits,
        dataset.labels,
        task=predictor.task,
        label_names=predictor.labels.names,
        threshold=predictor.threshold if predictor.task == "multi_label" else None,
    )
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(data).stem) or "data"
    target = Path(out_dir) if out_dir is not None else predictor.run.root / "evals" / stem
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_json(target / "metrics.json", metrics)
    written = write_report(
        target,
        metrics,
        label_names=predictor.labels.names,
        title=f"tunelab eval: {predictor.run.name} on {Path(data).name}",
        meta={"run": str(predictor.run.root), "data": str(data), "rows": len(dataset)},
        split=Path(data).name,
    )
    return {**metrics, "report": str(written.get("report.html", target / "report.html"))}
