"""SIGTERM caught by another thread still stops a following monitor at once.

The kernel hands a process-directed signal (``kill``, ``docker stop``) to any thread that does not
block it; CPython then runs the Python handler in the main thread only between bytecodes. A main
thread asleep in ``stop.wait(RETRY_S)`` or in the poll wait slept on to its timeout, then stopped:
CI saw a following run's retry wait take its whole 60 s after SIGTERM. Here the signal is sent to a
helper thread with ``pthread_kill``, which makes that delivery certain.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_monitor_alert_totals_and_retry import failing_saves, stand_in, two_feeds  # noqa: F401
from test_monitor_app import classifier, cli_args, config, write_config, write_jsonl

from tunelab.apps.monitor import Monitor
from tunelab.cli import monitor_cmd


@pytest.fixture
def signal_on_a_helper_thread() -> Iterator[Callable[[float], None]]:
    """``send(after_s)``: SIGTERM delivered to a helper thread ``after_s`` seconds from now.

    The process-wide handler is a harmless one for the test's length (the code under test installs
    its own over it); a signal not yet sent when the test ends is never sent."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    finished = threading.Event()
    threads: list[threading.Thread] = []

    def send(after_s: float) -> None:
        def wait_then_signal() -> None:
            if not finished.wait(after_s):
                signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

        thread = threading.Thread(target=wait_then_signal, daemon=True)
        thread.start()
        threads.append(thread)

    try:
        yield send
    finally:
        finished.set()
        for thread in threads:
            thread.join(timeout=5)
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_taken_by_another_thread_ends_the_retry_wait_at_once(
    tmp_path: Path,
    stand_in: None,  # noqa: F811
    two_feeds: tuple[Path, int],  # noqa: F811
    failing_saves: Callable[..., list[int]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    signal_on_a_helper_thread: Callable[[float], None],
) -> None:
    path, _ = two_feeds
    monkeypatch.setattr(monitor_cmd, "RETRY_S", 60.0)
    calls = failing_saves(lambda n: True)  # the database stays down: the run waits to retry
    signal_on_a_helper_thread(3.0)
    started = time.monotonic()
    assert monitor_cmd.run(cli_args("run", "--config", str(path))) == 0
    elapsed = time.monotonic() - started
    assert calls, "the run never tried to store"
    assert elapsed < 10, f"SIGTERM taken by another thread waited {elapsed:.0f}s for the retry"


def test_sigterm_taken_by_another_thread_ends_the_poll_wait_at_once(
    tmp_path: Path,
    stand_in: None,  # noqa: F811
    signal_on_a_helper_thread: Callable[[float], None],
) -> None:
    write_jsonl(tmp_path / "news.jsonl", [])
    path = write_config(tmp_path, poll="60s")
    signal_on_a_helper_thread(3.0)
    started = time.monotonic()
    assert monitor_cmd.run(cli_args("run", "--config", str(path))) == 0
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"SIGTERM taken by another thread waited {elapsed:.0f}s for the next poll"


def test_a_stop_set_by_another_thread_still_ends_a_run_in_a_thread(tmp_path: Path) -> None:
    """The server's case: ``run`` in a thread, ``stop`` set from elsewhere, no signals involved."""
    write_jsonl(tmp_path / "news.jsonl", [])
    stop = threading.Event()
    with Monitor(config(tmp_path, poll="60s"), classifier=classifier()) as monitor:
        runner = threading.Thread(target=monitor.run, kwargs={"stop": stop})
        runner.start()
        time.sleep(1.0)
        started = time.monotonic()
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert time.monotonic() - started < 5
