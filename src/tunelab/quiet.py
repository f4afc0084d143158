"""Hide library chatter from one thread only, never from the rest of the process.

Exporters, quantisers and ``from_pretrained`` print warnings and log records that say nothing
actionable to a tunelab user. The obvious tools are process-wide: ``logging.disable``,
``warnings.catch_warnings`` and transformers' ``set_verbosity_error`` change global state, so while
one thread loads a model (a server's admin endpoint loading a new version) every other thread's
access-log lines and warnings would vanish too, and two overlapping blocks could restore the wrong
state for good. ``quiet()`` instead marks the calling thread; one filter on the log handlers and one
wrapper around ``warnings.showwarning`` drop what that thread emits below ERROR, and let everything
else through unchanged. Real failures still raise.

A third hook keeps the block from configuring logging for the whole process: ``logging.warning``
and its siblings (onnxruntime's quantiser calls them) run ``logging.basicConfig()`` when the root
logger has no handler, and the stderr handler it adds outlived the block, so every later
``tunelab.train()`` in a notebook printed its INFO lines. ``basicConfig`` called from a quiet thread
does nothing; the record then reaches ``logging.lastResort``, which the filter covers (an ERROR
still shows). Other threads' calls go through unchanged, so a server configuring its logging at
the same moment keeps its handler, which a snapshot-and-remove of the root's handlers would not.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_state = threading.local()  # depth: how many quiet() blocks the current thread is in
_install = threading.Lock()


def _quiet_here() -> bool:
    return getattr(_state, "depth", 0) > 0


class _QuietThreadFilter(logging.Filter):
    """Drops records below ERROR emitted by a thread inside ``quiet()``; passes all others."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not _quiet_here()


_FILTER = _QuietThreadFilter()


def _showwarning(
    message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    if _quiet_here():
        return
    _showwarning.wrapped(message, category, filename, lineno, file, line)  # type: ignore[attr-defined]


def _basic_config(**kwargs: Any) -> None:
    if _quiet_here():
        return
    _basic_config.wrapped(**kwargs)  # type: ignore[attr-defined]


def _handlers() -> list[logging.Handler]:
    """Every handler a record can reach now: the root's, each logger's own, and the last resort."""
    found: list[logging.Handler] = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            found.extend(logger.handlers)
    if logging.lastResort is not None:
        found.append(logging.lastResort)
    return found


def _install_hooks() -> None:
    """Attach the filter and the warnings and ``basicConfig`` wrappers where they are missing
    (idempotent, cheap).

    All pass everything through for threads that are not inside ``quiet()``, so leaving them in
    place changes nothing for anyone else.
    """
    with _install:
        for handler in _handlers():
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
        if warnings.showwarning is not _showwarning:
            _showwarning.wrapped = warnings.showwarning  # type: ignore[attr-defined]
            warnings.showwarning = _showwarning
        if logging.basicConfig is not _basic_config:  # ``logging.warning`` looks it up on each call
            _basic_config.wrapped = logging.basicConfig  # type: ignore[attr-defined]
            logging.basicConfig = _basic_config


@contextmanager
def quiet() -> Iterator[None]:
    """Hide warnings and log records below ERROR that the calling thread emits in the block."""
    _install_hooks()
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


_bars_lock = threading.Lock()
_bars_holders = 0
_bars_were_on = False


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """No transformers progress bars during the block (its ``Loading weights`` bar on every load).

    transformers has one process-wide switch and no per-call option, so overlapping blocks are
    counted: the first turns bars off, the last puts back what was there before, and two threads
    loading at once can never leave the switch in the wrong state.
    """
    global _bars_holders, _bars_were_on
    from transformers.utils import logging as hf_logging

    with _bars_lock:
        if _bars_holders == 0:
            _bars_were_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
        _bars_holders += 1
    try:
        yield
    finally:
        with _bars_lock:
            _bars_holders -= 1
            if _bars_holders == 0 and _bars_were_on:
                hf_logging.enable_progress_bar()


__all__ = ["no_progress_bars", "quiet"]
