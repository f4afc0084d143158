"""Training history: one JSON object per line in ``logs/metrics.jsonl``, mirrored to TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_text


class MetricsLog:
    """Append-only JSONL log plus TensorBoard scalars.

    On resume, records after the checkpoint's step are dropped (they will be logged again), and
    TensorBoard's ``purge_step`` hides the stale events the same way; records up to that step are
    kept, so a resume never loses history it does not replay.
    """

    def __init__(self, path: Path, tb_dir: Path, *, resume_step: int | None = None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        if resume_step is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if record.get("step", 0) <= resume_step:
                    self.records.append(record)
        # Atomic: a kill here leaves the old log, never an empty one.
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in self.records))
        self._file = path.open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events at that step and after: the checkpoint's own step was logged
            # before it was saved and is not replayed, so only the steps after it are stale
            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(str(tb_dir), purge_step=purge)
        except ImportError:  # tensorboard is a dependency, but the JSONL log is enough to go on
            self._tb = None

    def log(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            prefix = record.get("split", "train") if record.get("event") == "eval" else "train"
            for key, value in record.items():
                if key not in ("step", "epoch", "event", "split") and isinstance(value, int | float):
                    self._tb.add_scalar(f"{prefix}/{key}", value, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
