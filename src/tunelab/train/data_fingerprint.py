"""A fingerprint of the rows a run trains on, so ``train --resume`` never mixes two datasets.

A resume reads the run's data files again from the paths in its config. If a file was edited
between the kill and the resume (rows fixed, added or re-shuffled), the restored checkpoint's
epoch position and shuffled order point into other rows, and the best-checkpoint choice compares
dev scores over two different dev sets: the finished run then describes no dataset at all, and
nothing said so. ``_check_same_labels`` caught only a change of the label set. So training records
one sha256 per split of the rows as read (texts, second texts, label ids) in ``run.json``, and a
resume that restores a checkpoint compares them. Hand-written: a few lines of hashlib over the
rows; no library fingerprints an in-memory dataset this way.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tunelab.errors import RunError

SUMMARY_KEY = "data_fingerprint"


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (label ids may come from pandas)."""
    return value.item() if hasattr(value, "item") else str(value)


def rows_digest(rows: Any) -> str:
    """sha256 over a split's texts, second texts and labels, in order."""
    digest = hashlib.sha256()
    for part in (rows.texts, rows.text_pairs, rows.labels):
        text = json.dumps(part, ensure_ascii=False, separators=(",", ":"), default=_plain)
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def split_fingerprints(splits: Any, unlabeled: Any = None) -> dict[str, str | None]:
    """One digest per split as read (None for a split the run has not), and the unlabelled texts'."""
    out: dict[str, str | None] = {
        name: (None if rows is None else rows_digest(rows))
        for name, rows in (("train", splits.train), ("dev", splits.dev), ("test", splits.test))
    }
    if unlabeled is not None:  # self_training: (texts, rows skipped as empty)
        texts = unlabeled[0] if isinstance(unlabeled, tuple) else unlabeled
        out["unlabeled"] = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16]
    return out


def check_same_data(
    where: str, began: dict[str, str | None] | None, now: dict[str, str | None], files: dict[str, Any]
) -> None:
    """Refuse a resume whose data differ from the rows its checkpoint was trained on.

    ``began``: run.json's record (None for a run from before it was kept: nothing to compare).
    ``files``: each split's file, to name it.

    Raises:
        RunError: one line naming the splits that changed and their files.
    """
    if not isinstance(began, dict):
        return
    changed = [name for name in now if name in began and began[name] != now[name]]
    if not changed:
        return
    named = ", ".join(
        f"{name.replace('_', ' ')} ({files.get(name) or 'carved from data.train'})" for name in changed
    )
    raise RunError(
        f"--resume {where}: the data changed since the run began: {named} no longer hold the rows "
        "its checkpoint was trained on; restore the files, or train a fresh run"
    )
