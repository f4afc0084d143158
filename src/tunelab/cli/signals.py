"""SIGTERM stops a command as Ctrl-C does: the same clean-up, then "terminated" and exit status 143."""

from __future__ import annotations

import _thread
import contextlib
import signal
import sys
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
    if received:
        # The handler ran inside a finaliser (a weakref callback during garbage collection), where
        # its KeyboardInterrupt was swallowed, and nothing handed it back in time (or nothing could:
        # ``interrupts_not_swallowed`` cannot where Ctrl-C is ignored, as in a background job): the
        # work went on to its end and the command exited 0, the stop lost. Late, it is still said
        # and its status given; a hand-back still waiting is called off, or it would be raised over
        # this one as a plain "interrupted".
        cancel_hand_backs()
        late = KeyboardInterrupt()
        late.said = "terminated"  # type: ignore[attr-defined]
        late.exit_status = 128 + signal.SIGTERM  # type: ignore[attr-defined]
        raise late


#: How long after a swallowed interrupt it is raised again in the main thread (interrupts_not_swallowed)
HAND_BACK_AFTER_S = 0.05
# The hand-backs scheduled and not yet joined or called off (main thread only)
_hand_backs: list[threading.Timer] = []


def cancel_hand_backs() -> None:
    """Call off the hand-backs still waiting: an interrupt is already on its way out."""
    while _hand_backs:
        _hand_backs.pop().cancel()


@contextlib.contextmanager
def interrupts_not_swallowed() -> Iterator[None]:
    """A Ctrl-C (or a SIGTERM, raised as one by ``sigterm_interrupts``) is never lost in the block.

    Python runs a signal's handler at the next bytecode of the main thread; when that bytecode is in
    a ``__del__`` or a garbage collector's weakref callback (tqdm's bar, torch's weak dictionaries),
    the KeyboardInterrupt it raises cannot leave it: Python printed "Exception ignored in ..." with a
    traceback and the command went on as if nothing had been pressed (an export finished and exited
    0; a training would have run to its end). The hook Python calls for such an exception hands the
    interrupt back to the main thread with ``_thread.interrupt_main()`` (from a helper thread), which
    raises it at a bytecode there after the finaliser; Ctrl-C's default handler must be the one in
    place (it is in a command), else the exception is passed to the previous hook as before. Only
    the main thread may install it; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        kind = unraisable.exc_type
        if (
            kind is not None
            and issubclass(kind, KeyboardInterrupt)
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            # from another thread, a moment later: called here (or by a thread started at once),
            # the interrupt was raised in the hook itself, inside the finaliser, and swallowed
            # again. One raised in another finaliser comes back here and is handed on once more.
            timer = threading.Timer(HAND_BACK_AFTER_S, _thread.interrupt_main)
            timer.daemon = True
            timer.start()
            _hand_backs.append(timer)
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    except BaseException:
        # an interrupt (or any error) already leaves the block: a second one raised over it would
        # replace its words and status (train's --resume hint, "terminated")
        sys.unraisablehook = previous
        cancel_hand_backs()
        raise
    sys.unraisablehook = previous
    # one swallowed at the block's very end is raised here, in the block, not in the caller
    while _hand_backs:
        _hand_backs.pop().join()
