"""The command's exit: Python's own shutdown, without the native libraries' teardown after it.

A command that had read or written Parquet could end in "terminate called without an active
exception" and exit status -6 (SIGABRT, a core dump where they are on) after its work was done and
said: pyarrow's C++ thread pools are torn down by static destructors after Python has finalised,
and a worker thread still joinable there calls ``std::terminate`` (apache/arrow#34314, open; seen in
this project's CI once in some thousand runs, after ``predict --output x.parquet`` was stopped by
SIGTERM). A script or scheduler reading the status took a finished command for a crash. No option
of pyarrow's avoids it, so the command ends as CPython would up to that point (other threads
joined, ``atexit`` callbacks run: logging's flush, multiprocessing's workers, temporary folders,
stdout and stderr flushed) and then leaves with ``os._exit``, which runs no C-level exit handler
and no static destructor. Files are closed by then: every output is written under a temporary name
and renamed inside the command (``tunelab.atomic``), never left to a finaliser.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from typing import NoReturn


def exit_skipping_native_teardown(status: int) -> NoReturn:
    """End the process with ``status`` after Python's part of a normal exit, skipping the C part.

    A Ctrl-C or SIGTERM during these steps is ignored (the command has ended; raised here it came out
    as a traceback and the full teardown ran after all), and ``os._exit`` comes whatever they raise.
    """
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
                signal.signal(signum, signal.SIG_IGN)
        # What Py_Finalize calls first: threading's exit hooks (concurrent.futures wakes its idle
        # workers there: joined without them, an executor still referenced hung the exit), then
        # every non-daemon thread (a server's, a writer's) joined.
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            shutdown()
        else:  # pragma: no cover - every CPython has it; a join as the fallback
            for thread in threading.enumerate():
                if thread is not threading.current_thread() and not thread.daemon:
                    thread.join()
        # atexit has no public "run them now"; _run_exitfuncs is what Py_Finalize calls, and it
        # reports a failing callback ("Exception ignored in atexit callback") and goes on
        atexit._run_exitfuncs()  # type: ignore[attr-defined]
        for stream in (sys.stdout, sys.stderr):
            # a reader gone (`| head -1`) or a stream closed by the command: nothing more can be said
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.flush()
    finally:
        os._exit(status)
