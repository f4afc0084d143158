"""Waiting on a stop event that a signal handler sets, without sleeping through the signal."""

from __future__ import annotations

import threading
import time

# Short enough that a stop asked for by SIGTERM is seen well inside ``docker stop``'s 10 s grace,
# long enough that an idle follower wakes only a few times a second.
SIGNAL_CHECK_S = 0.25


def wait_for_stop(stop: threading.Event, seconds: float) -> bool:
    """``stop.wait(seconds)``, woken within ``SIGNAL_CHECK_S`` by a handler that sets ``stop``.

    The kernel hands a process-directed signal (``kill``, ``docker stop``) to any thread that does
    not block it, and CPython runs the Python handler only in the main thread, between bytecodes:
    a main thread blocked in one long ``Event.wait`` is not woken when another thread took the
    signal, and slept on to its timeout (a following monitor's 60 s retry wait, seen in CI). Waiting
    in short slices gives the handler its bytecode boundary. Other threads cannot run handlers and
    are woken by ``set`` itself, so they wait in one piece. No library offers this
    (``signal.set_wakeup_fd`` needs an fd the waiter selects on; an Event has none).
    """
    if threading.current_thread() is not threading.main_thread():
        return stop.wait(seconds)
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return stop.is_set()
        if stop.wait(min(left, SIGNAL_CHECK_S)):
            return True
