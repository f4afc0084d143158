"""Training history: one JSON object per line in ``logs/metrics.jsonl``, mirrored to TensorBoard."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_text, storage_problem

logger = logging.getLogger(__name__)


class MetricsLog:
    """Append-only JSONL log plus TensorBoard scalars.

    On resume, records after the checkpoint's step are dropped (they will be logged again), and
    TensorBoard's ``purge_step`` hides the stale events the same way; records up to that step are
    kept, so a resume never loses history it does not replay.

    TensorBoard is a convenience: when its event file cannot be written (a full disk), a warning
    says so once and training goes on without it. The JSONL log is the run's history, and a write
    error there ends training as any other (naming the file).
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
        self._tb_dir = tb_dir
        self._tb: Any = None
        self._quieting = False  # whether this log counts in _quiet_writer_threads
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency, but the JSONL log is enough to go on
            return
        _quiet_writer_threads(True)
        self._quieting = True
        try:
            # purge_step hides events at that step and after: the checkpoint's own step was logged
            # before it was saved and is not replayed, so only the steps after it are stale
            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(str(tb_dir), purge_step=purge)
        except OSError as exc:  # its first event is written (and flushed) here
            self._drop_tensorboard(exc)
        except BaseException:
            self._quieting = False
            _quiet_writer_threads(False)
            self._file.close()
            raise

    def log(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as exc:  # a file object's error names no file
            raise type(exc)(exc.errno, exc.strerror, str(self.path)) from exc
        if self._tb is not None:
            prefix = record.get("split", "train") if record.get("event") == "eval" else "train"
            try:
                for key, value in record.items():
                    if key not in ("step", "epoch", "event", "split") and isinstance(value, int | float):
                        self._tb.add_scalar(f"{prefix}/{key}", value, record["step"])
            except OSError as exc:  # the writer thread's error, raised again here by tensorboard
                self._drop_tensorboard(exc)

    def close(self) -> None:
        try:
            try:
                self._file.close()
            except OSError as exc:
                raise type(exc)(exc.errno, exc.strerror, str(self.path)) from exc
            if self._tb is not None:
                try:
                    self._tb.close()
                except OSError as exc:
                    self._drop_tensorboard(exc)
        finally:
            if self._quieting:
                self._quieting = False
                _quiet_writer_threads(False)

    def _drop_tensorboard(self, exc: OSError) -> None:
        """Say once that the TensorBoard events stop here, and write no more of them."""
        problem = storage_problem(exc, where=self._tb_dir)
        said = f"{problem.what}" if problem is not None else f"{self._tb_dir}: {exc}"
        logger.warning(
            "TensorBoard events are no longer written (%s); training goes on, %s keeps the history",
            said,
            self.path.name,  # the run's folder is renamed when it finishes: its full path would not last
        )
        tb, self._tb = self._tb, None
        if tb is not None:
            # Best effort: its flush fails again on a full disk. Its writer opens the event file for
            # each write (tensorboard's GFile appends), so nothing stays open when it does.
            for writer in list((tb.all_writers or {}).values()):
                with contextlib.suppress(Exception):
                    writer.close()


# TensorBoard writes its events in a thread of its own (tensorboard.summary.writer.event_file_writer
# ._AsyncWriterThread), which re-raises a write error after keeping it: Python then printed that
# thread's traceback on the console (in the middle of the progress bar), and tensorboard raises the
# same error again in the training thread at the next add_scalar/flush/close, where MetricsLog
# catches it. While a MetricsLog is open, the OSError of such a thread is therefore not printed;
# everything else goes to the hook that was there before.
_quiet_lock = threading.Lock()
_quiet_users = 0
_previous_hook: Callable[[threading.ExceptHookArgs], Any] | None = None
_installed = False


def _is_tensorboard_writer(thread: threading.Thread | None) -> bool:
    return thread is not None and type(thread).__module__.startswith("tensorboard.")


def _quiet_hook(args: threading.ExceptHookArgs) -> None:
    if _quiet_users and issubclass(args.exc_type, OSError) and _is_tensorboard_writer(args.thread):
        return
    (_previous_hook or threading.__excepthook__)(args)


def _quiet_writer_threads(on: bool) -> None:
    """Install ``_quiet_hook`` for the first open MetricsLog; put the previous hook back after the last.

    Counted, since logs may be open together (threads training side by side). A hook installed
    over ours meanwhile keeps ours in its chain: ours then stays, passing everything on while no
    log is open, and is not installed a second time (it would call itself).
    """
    global _quiet_users, _previous_hook, _installed
    with _quiet_lock:
        if on:
            _quiet_users += 1
            if not _installed:
                _previous_hook, threading.excepthook = threading.excepthook, _quiet_hook
                _installed = True
            return
        _quiet_users = max(0, _quiet_users - 1)
        if _quiet_users == 0 and _installed and threading.excepthook is _quiet_hook:
            threading.excepthook = _previous_hook or threading.__excepthook__
            _previous_hook, _installed = None, False
