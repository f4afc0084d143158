"""``list_runs``: what a runs folder holds, for ``tunelab runs`` and ``tunelab.list_runs``.

A runs folder holds trained runs, exported artifacts (``tunelab export`` writes ``<run>-<format>``
beside the run by default) and unfinished ``.partial`` folders of either. Each is told apart by
what it already wrote: an artifact's ``run.json`` names its ``format``; an unfinished export has
the export marker; an unfinished run may have only ``config.json``, so its data is read from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tunelab.errors import RunError
from tunelab.runs.folder import EXPORT_MARKER, RunFolder
from tunelab.runs.json_files import JsonFileError, read_json_object


@dataclass(frozen=True)
class RunInfo:
    """One row of ``tunelab runs``.

    Attributes:
        path: the folder.
        status: ``finished``, ``exported`` (an artifact), ``unfinished`` (a run or an export that
            was interrupted or is still going; see ``kind``), ``damaged`` (a folder that is not
            unfinished but whose run.json is missing, unreadable or not an object), or what
            run.json says.
        summary: the folder's run.json (empty when it has none yet).
        kind: ``run``, ``export`` or ``ensemble`` (built by ``tunelab ensemble``: run.json's
            ``members`` lists its runs; ``when`` is when it was built).
        format: ``torch`` for a trained run, else the artifact's format (``onnx-int8``, ...);
            None for an unfinished export that has not written its run.json yet.
        data: the training data files (``train``, ``dev``, ``test``), also for unfinished runs.
        when: ISO time the run finished or the artifact was exported; None while unfinished.
    """

    path: Path
    status: str
    summary: dict[str, Any]
    kind: str = "run"
    format: str | None = "torch"
    data: dict[str, Any] = field(default_factory=dict)
    when: str | None = None


def list_runs(output_dir: str | Path = "runs") -> list[RunInfo]:
    """Every run and artifact (finished or not) under ``output_dir``, newest first.

    Raises:
        RunError: ``output_dir`` does not exist (a typo, or no run trained yet), said in one line
            instead of an empty list that looks like "no runs".
    """
    out = Path(output_dir)
    if not out.is_dir():
        what = "not a folder" if out.exists() else "no such folder"
        raise RunError(
            f"{out}: {what}; runs are written to output_dir (default runs/) by `tunelab train CONFIG`, "
            "give the folder that holds them with --dir"
        )
    found = []
    for root in out.iterdir():
        if not _is_listed(root):
            continue
        info = _info(root)
        try:
            # Read after _info: a folder renamed meanwhile (a run or export finishing renames its
            # .partial) is skipped, not half-read; its new name is listed if iterdir reaches it.
            mtime = root.stat().st_mtime
        except FileNotFoundError:
            continue
        found.append((mtime, info))
    # Newest first by when a run finished or an artifact was exported (an eval writing into a run
    # folder changes its mtime, not that); unfinished folders by their last change, on top.
    found.sort(key=lambda pair: (pair[1].when is None, _timestamp(pair[1].when, pair[0])), reverse=True)
    return [info for _, info in found]


def _timestamp(when: str | None, mtime: float) -> float:
    if when is None:
        return mtime
    try:
        return datetime.fromisoformat(when).timestamp()
    except (TypeError, ValueError):  # a damaged run.json
        return mtime


def _is_listed(root: Path) -> bool:
    return root.is_dir() and ((root / "config.json").is_file() or (root / EXPORT_MARKER).is_file())


def _info(root: Path) -> RunInfo:
    run = RunFolder(root)
    summary = run.read_summary()
    # Each field as the type it should have (a damaged or hand-edited run.json: "finished_at": 17e8,
    # "export": "onnx"), so one such folder shows "-" instead of failing the whole listing.
    export = _dict(summary.get("export"))
    # An artifact of tunelab export has its marker (while unfinished) or an ``export`` block; a
    # ``format`` alone is not one (an ensemble's run.json says ``format: ensemble``).
    is_export = (root / EXPORT_MARKER).is_file() or bool(export)
    fmt = _text(summary.get("format", None if is_export else "torch"))
    if run.is_partial:
        status, when = "unfinished", None
    elif is_export:
        status, when = "exported", _text(export.get("created_at"))
    elif not summary:  # every finished run writes run.json: a missing or unreadable one was "finished"
        status, when = "damaged", None
    else:
        status, when = _text(summary.get("status", "finished")) or "?", _text(summary.get("finished_at"))
    if is_export:
        kind = "export"
    elif isinstance(summary.get("members"), list):
        kind = "ensemble"
    else:
        kind = "run"
    return RunInfo(
        path=root,
        status=status,
        summary=summary,
        kind=kind,
        format=fmt,
        data=_dict(summary.get("data")) or _config_data(run),
        when=when,
    )


def _config_data(run: RunFolder) -> dict[str, Any]:
    """The data files from config.json: an unfinished run's run.json does not name them yet."""
    try:
        data = read_json_object(run.config_json).get("data") or {}
    except (OSError, JsonFileError):
        return {}
    return {split: data.get(split) for split in ("train", "dev", "test")} if isinstance(data, dict) else {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
