"""In-memory data for ``tunelab.train``: a pandas DataFrame or a Hugging Face ``datasets.Dataset`` per split.

A run names its data by file (``config.json``'s ``data.train``), and everything after training reads
it again from there: ``train --resume``, ``Predictor.dev_split`` (the support bot), the run's
report. So a frame is written once as a JSON lines file and the run points at it, like any other
file. The file lives in ``<output_dir>/_frames/`` (not in the run folder, whose path changes when
``<name>.partial`` is renamed at the end), named by split and content hash, so training twice on
the same frame writes it once. It is ASCII-only JSON, which reads the same whatever
``data.encoding`` the other splits need. Row numbers in data messages about it are JSON line
numbers: line N is the frame's N-th row (by position, from 1).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_text
from tunelab.config import RunConfig
from tunelab.errors import ConfigError, DataError

FRAMES_DIR = "_frames"
SPLITS = ("train", "dev", "test")


def is_frame(value: Any) -> bool:
    """A pandas DataFrame or a ``datasets.Dataset`` (checked without importing ``datasets``)."""
    import pandas as pd

    return isinstance(value, pd.DataFrame) or _is_hf_dataset(value)


def refuse_splits_given_twice(overrides: list[str] | None, given: dict[str, Any]) -> None:
    """Raise ``ConfigError`` when an override names a split also given as an argument.

    ``tunelab.train(cfg, train=df, overrides=["data.train=new.csv"])`` trained on the frame and never
    read the file, without a word. A config file's ``data.train`` is what ``train=`` replaces (its
    documented use), so only overrides, written in the same call, count as giving it twice.
    """
    from tunelab.config import apply_override

    raw: dict[str, Any] = {}
    for item in overrides or []:
        try:
            apply_override(raw, item, warn=False)
        except ConfigError:
            continue  # the config was loaded with them: not reached
    named = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    for split in SPLITS:
        if given.get(split) is not None and split in named:
            raise ConfigError(
                f"data.{split} is given twice: as {split}= and as the override "
                f"data.{split}={named[split]}; give one of them"
            )


def with_frames(cfg: RunConfig, given: dict[str, Any]) -> RunConfig:
    """``cfg`` with ``data.<split>`` set from ``given``: a path as it is, a frame written to a file.

    Args:
        cfg: the resolved run config.
        given: split name -> a path, a DataFrame, a ``datasets.Dataset``, or None (keep the config's).

    Raises:
        ConfigError: a value of another type, a ``DatasetDict``, or ``data.format`` set to
            something other than auto/jsonl while a frame is given (it applies to every split).
        DataError: a frame without the columns the run reads (named, with the setting to change).
    """
    changes: dict[str, str] = {}
    for split, value in given.items():
        if value is None:
            continue
        if isinstance(value, str | Path):
            changes[split] = str(value)
            continue
        frame = _to_pandas(split, value)
        if cfg.data.format not in ("auto", "jsonl"):
            raise ConfigError(
                f"data.format={cfg.data.format!r} applies to every split; with a DataFrame for {split}, "
                "leave data.format at auto"
            )
        _check_columns(split, frame, cfg)
        changes[split] = str(_write(frame, Path(cfg.output_dir) / FRAMES_DIR, split))
    if not changes:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **changes))


def _to_pandas(split: str, value: Any) -> Any:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value
    if _is_hf_dataset(value):
        if not hasattr(value, "to_pandas"):  # a DatasetDict: several splits in one object
            raise ConfigError(
                f"{split}: a DatasetDict holds several splits; give one, e.g. {split}=ds[{split!r}]"
            )
        return value.to_pandas()
    raise ConfigError(
        f"{split}: {type(value).__name__} is not data tunelab reads; give a file path, a pandas "
        "DataFrame or a datasets.Dataset"
    )


def _is_hf_dataset(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "datasets"


def _check_columns(split: str, frame: Any, cfg: RunConfig) -> None:
    from tunelab.tasks import get_task

    needed = get_task(cfg.data.task).frame_columns(cfg.data)
    missing = [(setting, column) for setting, column in needed if column not in frame.columns]
    if missing:
        wanted = ", ".join(f"{column!r} ({setting})" for setting, column in missing)
        # one list item per setting: joined into one item, the advice given back failed to parse
        fix = ", ".join(repr(f"{setting}=NAME") for setting, _ in missing)
        raise DataError(
            f"{split} DataFrame: columns {[str(c) for c in frame.columns]}; the run needs {wanted}. "
            f"Rename the columns or give overrides=[{fix}]"
        )
    if frame.empty:
        raise DataError(f"{split} DataFrame: no rows; give at least one labelled row")


def _write(frame: Any, folder: Path, split: str) -> Path:
    text = frame.to_json(orient="records", lines=True, force_ascii=True, date_format="iso")
    if text and not text.endswith("\n"):
        text += "\n"
    digest = hashlib.sha256(text.encode("ascii")).hexdigest()[:16]
    path = folder / f"{split}-{digest}.jsonl"
    if not path.is_file():  # same content, same name: written once, atomically
        atomic_write_text(path, text)
    return path
