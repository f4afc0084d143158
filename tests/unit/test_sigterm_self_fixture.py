"""The ``sigterm_self`` fixture: a stop that is no longer wanted is never sent.

A monitor test that failed early once left its killer thread behind, which sent SIGTERM to the
whole test session seconds later and ended CI with ``Error 143``; these pin the fixture's promise.
"""

from __future__ import annotations

import signal
import time


def test_a_pending_stop_is_dropped_when_the_run_has_ended(sigterm_self) -> None:
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))  # fixture restores
    sigterm_self.when(lambda: False, timeout_s=0.3)
    sigterm_self.finished.set()  # what the fixture does when the test ends, failed or not
    sigterm_self.join()
    time.sleep(0.4)
    assert received == []


def test_the_stop_is_sent_once_the_condition_holds(sigterm_self) -> None:
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    sigterm_self.when(lambda: True, timeout_s=5)
    sigterm_self.join()
    deadline = time.monotonic() + 2
    while not received and time.monotonic() < deadline:  # handlers run in the main thread
        time.sleep(0.01)
    assert received == [signal.SIGTERM]
