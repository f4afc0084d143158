"""SIGTERM stops a command as Ctrl-C does: the same clean-up, then "terminated" and exit status 143."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[list[int]]:
    """SIGTERM raises KeyboardInterrupt in the block, as Ctrl-C does, so its clean-up runs.

    ``docker stop``, Slurm's ``scancel`` (or its time limit) and ``kill`` send SIGTERM, whose
    default action ended the process at once with status 143 and nothing said: a training run's
    ``.partial`` folder without its ``--resume`` hint, a ``predict --output`` file's hidden
    temporary left beside it. The handler raises KeyboardInterrupt in the main thread and records
    the signal in the list it yields; it puts the previous handler back first, so a second SIGTERM
    during the clean-up acts as before. The interrupt leaving the block says "terminated" and
    exits 143 (``cli.main`` prints and exits with its ``said`` and ``exit_status``), as a process
    killed by the signal would. Only the main thread may set a handler: elsewhere (``train`` run
    from a thread) nothing changes. The previous handler is restored when the block ends.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    # None: a handler set outside Python, which cannot be put back; the default is the nearest
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None:
        previous = signal.SIG_DFL

    def interrupt(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        signal.signal(signal.SIGTERM, previous)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield received
    except KeyboardInterrupt as exc:
        if received:  # not Ctrl-C's
            exc.said = "terminated"  # type: ignore[attr-defined]
            exc.exit_status = 128 + signal.SIGTERM  # type: ignore[attr-defined]
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
