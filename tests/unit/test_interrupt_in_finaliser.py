"""A Ctrl-C whose KeyboardInterrupt is raised inside a finaliser (a ``__del__``, a weakref callback)
still stops the command: Python swallowed it there ("Exception ignored in ..." and a traceback), and
the command went on as if nothing had been pressed (``export`` finished and exited 0; the test suite
once logged one inside torch's ``WeakIdKeyDictionary`` callback)."""

from __future__ import annotations

import gc
import signal
import sys
import time
from collections.abc import Iterator

import pytest

from tunelab.cli.signals import interrupts_not_swallowed


class PressedWhileCollected:
    """Raises KeyboardInterrupt from its finaliser, as a Ctrl-C handled at that moment would."""

    def __del__(self) -> None:
        raise KeyboardInterrupt


@pytest.fixture
def default_ctrl_c() -> Iterator[None]:
    """Ctrl-C's default handler, as in a command (a test runner's worker may have another)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def busy_for_a_while() -> None:
    """Ordinary bytecode for 1 s (the interrupt is handed back after 0.05 s): where it is raised."""
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        pass


def test_an_interrupt_swallowed_by_a_finaliser_is_raised_in_the_main_thread(default_ctrl_c: None) -> None:
    with pytest.raises(KeyboardInterrupt), interrupts_not_swallowed():
        PressedWhileCollected()  # collected at once: its __del__ raises where nothing can catch it
        gc.collect()
        busy_for_a_while()


def test_other_exceptions_in_finalisers_still_reach_the_previous_hook(
    default_ctrl_c: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[type[BaseException] | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))

    class Broken:
        def __del__(self) -> None:
            raise ValueError("a finaliser's own bug")

    with interrupts_not_swallowed():
        Broken()
    assert seen == [ValueError]


def test_the_hook_is_put_back_when_the_block_ends(default_ctrl_c: None) -> None:
    before = sys.unraisablehook
    with interrupts_not_swallowed():
        assert sys.unraisablehook is not before
    assert sys.unraisablehook is before


def test_a_command_stopped_in_a_finaliser_says_interrupted_and_exits_130(
    default_ctrl_c: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunelab.cli import runs_cmd
    from tunelab.cli.main import main

    def listed_then_pressed(args: object) -> int:
        PressedWhileCollected()
        busy_for_a_while()
        return 0

    monkeypatch.setattr(runs_cmd, "run", listed_then_pressed)
    assert main(["runs"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_an_interrupt_swallowed_at_the_blocks_very_end_is_raised_in_the_block(default_ctrl_c: None) -> None:
    """Not later, in the caller (``sys.exit(main())``), where it would be a traceback."""
    with pytest.raises(KeyboardInterrupt), interrupts_not_swallowed():
        PressedWhileCollected()
    try:  # caught here: a KeyboardInterrupt reaching pytest would stop the whole test session
        busy_for_a_while()
    except KeyboardInterrupt:
        pytest.fail("the interrupt was raised after the block had ended")


# Python reports the swallowed exception to the previous hook (pytest's) as it did before
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sigterm_swallowed_by_a_finaliser_is_still_said_when_nothing_handed_it_back() -> None:
    """Ctrl-C ignored (a background job), so no hand-back: the block ran to its end and the command
    exited 0 with the stop lost; now the stop is raised as the block ends, "terminated", 143."""
    from tunelab.cli.signals import sigterm_interrupts

    class TerminatedWhileCollected:
        def __del__(self) -> None:
            handler = signal.getsignal(signal.SIGTERM)
            assert callable(handler)
            handler(signal.SIGTERM, None)  # the handler, run where its exception cannot leave

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with (
            pytest.raises(KeyboardInterrupt) as stopped,
            interrupts_not_swallowed(),
            sigterm_interrupts() as received,
        ):
            TerminatedWhileCollected()
            assert received == [signal.SIGTERM]  # handled, and swallowed: the block went on
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped.value.said == "terminated"  # type: ignore[attr-defined]
    assert stopped.value.exit_status == 143  # type: ignore[attr-defined]


def no_interrupt_after_the_block() -> None:
    try:  # caught here: a KeyboardInterrupt reaching pytest would stop the whole test session
        busy_for_a_while()
    except KeyboardInterrupt:
        pytest.fail("a second interrupt was raised after the first had left the block")


def test_a_sigterm_swallowed_in_the_foreground_is_still_terminated_not_interrupted(
    default_ctrl_c: None,
) -> None:
    """Ctrl-C at its default (a foreground command): the hand-back was raised over the late
    "terminated" (143) as a plain "interrupted" (130)."""
    from tunelab.cli.signals import sigterm_interrupts

    class TerminatedWhileCollected:
        def __del__(self) -> None:
            handler = signal.getsignal(signal.SIGTERM)
            assert callable(handler)
            handler(signal.SIGTERM, None)

    with (
        pytest.raises(KeyboardInterrupt) as stopped,
        interrupts_not_swallowed(),
        sigterm_interrupts(),
    ):
        TerminatedWhileCollected()
    assert getattr(stopped.value, "exit_status", None) == 143
    no_interrupt_after_the_block()


def test_an_interrupt_leaving_the_block_keeps_its_words_over_a_swallowed_one(default_ctrl_c: None) -> None:
    """A training's "interrupted; `tunelab train --resume ...` continues" lost its hint to a
    hand-back raised over it."""

    class Hinted(KeyboardInterrupt):
        pass

    with pytest.raises(KeyboardInterrupt) as stopped, interrupts_not_swallowed():
        PressedWhileCollected()
        raise Hinted("`tunelab train --resume runs/x.partial` continues from the last checkpoint")
    assert isinstance(stopped.value, Hinted)
    no_interrupt_after_the_block()
