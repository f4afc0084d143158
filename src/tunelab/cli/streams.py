"""Standard output or error closed when the command started (``tunelab tasks >&-``, ``2>&-``).

Python then makes ``sys.stdout`` (``sys.stderr``) None: ``print`` to it is silent, but a flush
failed with an unexpected AttributeError after a command's work was done (exit 1), and
``print(..., file=sys.stderr)`` with a None stderr writes to stdout, so error lines went into the
data a pipe was reading (``keys list --json 2>&- | ...``). A closed stream is made ``/dev/null``, as
the shell's ``>/dev/null`` would, and marked, so a command whose one output must reach someone
(``keys create``'s token) can refuse to start.
"""

from __future__ import annotations

import os
import sys

_CLOSED = "_tunelab_closed_at_start"


def open_closed_streams() -> None:
    """Point a None ``sys.stdout`` or ``sys.stderr`` at ``/dev/null``, marked as closed."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 -- for the process's life
            setattr(stream, _CLOSED, True)
            setattr(sys, name, stream)


def stdout_closed() -> bool:
    """Standard output was closed when the command started: nothing written to it reaches anyone."""
    return sys.stdout is None or bool(getattr(sys.stdout, _CLOSED, False))
