"""Standard output or error closed when the command started (``tunelab tasks >&-``, ``2>&-``).

Python then makes ``sys.stdout`` (``sys.stderr``) None: ``print`` to it is silent, but a flush
failed with an unexpected AttributeError after a command's work was done (exit 1), and
``print(..., file=sys.stderr)`` with a None stderr writes to stdout, so error lines went into the
data a pipe was reading (``keys list --json 2>&- | ...``). A closed stream is made ``/dev/null``, as
the shell's ``>/dev/null`` would, and marked, so a command whose one output must reach someone
(``keys create``'s token) can refuse to start.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import Any

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


def stdout_is_summary(args: Any) -> bool:
    """The command's standard output reports on work written to files (``run: runs/météo``), not data
    a reader parses: its parser's ``stdout_summary`` default (True, or a test of the arguments)."""
    value = getattr(args, "stdout_summary", False)
    return bool(value(args) if callable(value) else value)


@contextlib.contextmanager
def escaping_stdout(summary: bool) -> Iterator[None]:
    """While the block runs, characters stdout's encoding cannot show are written as ``\\xNN``
    escapes, where ``summary`` (``stdout_is_summary``); elsewhere (data) they stay refused.

    Under ``PYTHONIOENCODING=ascii`` (or a cp1252 console) ``train ... name=météo`` trained and wrote
    the whole run, then failed printing ``run: runs/météo`` with status 2 and "run again", which the
    finished run's name then refused. Stderr escapes so already.
    """
    from tunelab.atomic import is_utf8_codec

    stream = sys.stdout
    # strict, or surrogateescape: what Python gives stdout under a C/POSIX locale (LC_ALL=C with
    # PYTHONUTF8=0), where `app support tune` wrote bot.yaml and then exited 2
    if (
        not summary
        or not isinstance(stream, io.TextIOWrapper)
        or is_utf8_codec(stream.encoding)
        or stream.errors not in ("strict", "surrogateescape")
    ):
        yield
        return
    before = stream.errors
    stream.reconfigure(errors="backslashreplace")
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a reader gone: main() handles the closed pipe
            stream.reconfigure(errors=before)


def json_ascii() -> bool:
    """``ensure_ascii`` for JSON printed to stdout: its ``\\uXXXX`` escapes read back as the same text,
    where a character stdout cannot encode failed the command after its work (``predict --json``)."""
    from tunelab.atomic import is_utf8_codec

    return not is_utf8_codec(getattr(sys.stdout, "encoding", None))
