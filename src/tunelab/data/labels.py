"""The label vocabulary of a run: label names <-> the ids the model's output layer uses.

The ids are the positions in ``sorted(set(training label names))``, so the same training file
always gives the same ids, whatever the row order; the map is saved beside every artifact so
that evaluation and prediction decode with exactly the ids the model was trained with.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_json
from tunelab.errors import ConfigError, DataError

_SHOWN = 8  # how many known labels an error message lists


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


@dataclass
class LabelMap:
    """Label names by id, and the task they belong to.

    Attributes:
        names: ``names[i]`` is the label with id ``i``.
        task: the registered task the labels belong to (``single_label``, ``multi_label``, ...).
    """

    names: list[str]
    task: str = "single_label"
    # Where the names came from and how a missing one is added, for ``encode``'s message (a zero-shot
    # classifier's come from its label file, and a description is what adds one).
    missing: str = field(default="is not in the training data", repr=False, compare=False)
    add_one: str = field(default="add training rows with it", repr=False, compare=False)
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from tunelab.tasks import get_task  # lazy: importing the tasks imports this module

        try:
            get_task(self.task)
        except ConfigError as exc:
            raise DataError(f"label map: {exc}") from None
        self.names = [str(n) for n in self.names]
        self._ids = {name: i for i, name in enumerate(self.names)}
        if len(self._ids) != len(self.names):
            raise DataError(f"label map: duplicate label names in {self.names}")
        # Names are looked up in Unicode NFC too (data files' label names are read so): a run
        # trained before kept a name as written ("café" as e + combining accent), and its data
        # read now spells it NFC. The names themselves stay as saved, so ids and output are the same.
        for name, i in list(self._ids.items()):
            self._ids.setdefault(_nfc(name), i)
        # A boolean label is spelt true (JSON, and JSON-lines data read now), True (pandas' to_csv,
        # and JSON read before it was read as written: runs trained then know "True") or TRUE
        # (Excel): each spelling finds the label whichever of them it was trained under.
        for name, i in list(self._ids.items()):
            if name.lower() in ("true", "false"):
                for spelling in (name.lower(), name.capitalize(), name.upper()):
                    self._ids.setdefault(spelling, i)

    @classmethod
    def from_names(cls, names: Iterable[str], task: str = "single_label") -> LabelMap:
        """Build the map from every label name seen in training (duplicates welcome)."""
        return cls(names=sorted(set(names)), task=task)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._id(name) is not None

    def _id(self, name: str) -> int | None:
        found = self._ids.get(name)
        return found if found is not None else self._ids.get(_nfc(name))

    def id_of(self, name: str) -> int:
        """The id of ``name``.

        Raises:
            DataError: ``name`` was not a training label.
        """
        found = self._id(name) if isinstance(name, str) else None
        if found is None:
            raise DataError(f"label {name!r} was not in the training data (known: {self.known()})")
        return found

    def _as_a_float(self, name: object) -> str:
        """A note when ``name`` is a known whole-number label written as a float (``1.0`` for ``1``).

        A CSV that pandas wrote from a float column says ``1.0``; the same column from Parquet or
        JSON reads ``1``: two files made from one DataFrame were refused, and the message did not
        say why.
        """
        whole = re.fullmatch(r"([+-]?\d+)\.0+", name) if isinstance(name, str) else None
        if whole is None or whole[1] not in self:
            return ""
        return f": {name!r} is {whole[1]!r} written as a float (a CSV pandas wrote from a float column)"

    def known(self) -> str:
        """A short, readable list of the labels, for error messages."""
        shown = ", ".join(self.names[:_SHOWN])
        more = f", ... ({len(self.names)} in all)" if len(self.names) > _SHOWN else ""
        return shown + more

    def encode(
        self, names: Sequence[str | list[str]], *, source: str, rows: Sequence[int], rows_are: str = ""
    ) -> list[Any]:
        """Turn label names into ids: an id per row, or a sorted id list per multi-label row.

        Args:
            names: a label name per row (single-label) or a list of names per row (multi-label).
            source: the file the names came from, for error messages.
            rows: the 1-based file row number of each entry of ``names``.
            rows_are: what those numbers count (``row_convention``), said in a message.

        Raises:
            DataError: a row has a label the training data did not have.
        """
        ids: list[Any] = []
        for row, value in zip(rows, names, strict=True):
            row_names = value if isinstance(value, list) else [value]
            unknown = [n for n in row_names if n not in self]
            if unknown:
                raise DataError(
                    f"{source} row {row}: label {unknown[0]!r} {self.missing} "
                    f"(known: {self.known()}){self._as_a_float(unknown[0])}; fix the label, or {self.add_one}"
                    + (f" ({rows_are})" if rows_are else "")
                )
            row_ids = [self.id_of(n) for n in row_names]
            ids.append(sorted(set(row_ids)) if isinstance(value, list) else row_ids[0])
        return ids

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "labels": list(self.names)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelMap:
        """Rebuild a map written by :meth:`to_dict`.

        Names must be text, as :meth:`to_dict` has always written them: a number, list, mapping or
        null there was made by hand, and read as its ``str()`` it became a label nothing predicts
        (``"None"``, ``"['a']"``). A task that is not text failed as "unhashable type: 'list'".

        Raises:
            DataError: ``d`` is not such a mapping, its task is not a name or a label not text.
        """
        if not isinstance(d, dict) or not isinstance(d.get("labels"), list):
            raise DataError('label map: expected {"task": ..., "labels": [...]}')
        task = d.get("task", "single_label")
        if not isinstance(task, str):
            raise DataError(f'label map: task {task!r} is not a task name (e.g. "single_label")')
        for i, name in enumerate(d["labels"]):
            if not isinstance(name, str):
                raise DataError(f"label map: label {i} is {name!r}, not text; write every label as a string")
        return cls(names=d["labels"], task=task)

    def save(self, path: str | Path) -> Path:
        """Write the map as JSON, atomically, so a crash never leaves half a label file."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> LabelMap:
        """Read a map written by :meth:`save`.

        Raises:
            DataError: the file is missing, a folder, or not a label map. A folder (a run's, say) was
                "label file not found", though it was there: the line says what to give instead.
        """
        p = Path(path)
        if p.is_dir():
            inside = p / "labels.json"
            hint = f"; this folder holds one: {inside}" if inside.is_file() else ""
            raise DataError(
                f'{p}: a folder, not a label file; give the labels.json a run wrote ({{"task": ..., '
                f'"labels": [...]}}){hint}'
            )
        if not p.is_file():
            raise DataError(f"{p}: label file not found")
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{p}: not a valid label file ({exc})") from None
        try:
            return cls.from_dict(raw)
        except DataError as exc:
            raise DataError(f"{p}: {exc}") from None
