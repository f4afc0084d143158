"""Logging for ``tunelab serve``: one stream handler for tunelab, uvicorn and the access log.

With ``mask_logs`` (the default) a ``MaskingFilter`` sits on that handler, so anything logged,
whoever logs it (tracebacks included), has e-mails, phone, card and account numbers masked,
except the arguments marked ``masking.Unmasked``: key names, which the operator chose (the access
line's ``key=``, the billing lines), shown as ``/metrics`` shows them. Texts themselves are logged
only at debug level.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Hashable

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONNECTION_LOG_INTERVAL_S = 10.0
_PROTOCOLS = f"{os.sep}uvicorn{os.sep}protocols{os.sep}"


class ConnectionNoiseFilter(logging.Filter):
    """At most one of uvicorn's per-connection lines per ``interval_s``, with a count of the rest.

    uvicorn logs each malformed HTTP request (a warning) and each WebSocket attempt (two info
    lines) before any key is read, so anyone who can reach the port wrote log lines without limit,
    where a request without a valid key is meant to cost a constant. Only lines logged from
    uvicorn's protocol modules are limited: the startup lines ("Uvicorn running on ...") and
    errors pass as they are. Written here since logging has no rate limit of its own.
    """

    def __init__(
        self, interval_s: float = CONNECTION_LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval_s, self.clock = interval_s, clock
        self._lock = threading.Lock()
        self._held = 0
        self._last = -float("inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or _PROTOCOLS not in (record.pathname or ""):
            return True
        with self._lock:
            now = self.clock()
            if now - self._last < self.interval_s:
                self._held += 1
                return False
            held, since, self._held, self._last = self._held, now - self._last, 0, now
        if held:
            record.msg = (
                f"{record.getMessage()} (and {held} more connection line(s) in the last {since:.0f}s; "
                f"at most one such line per {self.interval_s:.0f}s)"
            )
            record.args = ()
        return True


class RepeatGate:
    """Whether a failure that keeps recurring should be logged: the first time, when its message
    changes, and again every ``every_s`` while it lasts.

    A source or a store retried every few seconds would otherwise write the same line (or
    traceback) hundreds of times an hour. One gate holds one entry per ``key`` (a monitor, a
    webhook target). Written here since logging has no per-message rate limit of its own.
    """

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last: dict[Hashable, tuple[str, float]] = {}

    def should_log(self, key: Hashable, message: str, now: float) -> bool:
        """True (and remembered) when ``message`` for ``key`` at ``now`` (seconds) is worth a line."""
        last = self._last.get(key)
        if last is not None and last[0] == message and now - last[1] < self.every_s:
            return False
        self._last[key] = (message, now)
        return True

    def recovered(self, key: Hashable) -> bool:
        """Forget ``key``'s failure; True if it had one (so its recovery can be logged once)."""
        return self._last.pop(key, None) is not None


def configure_logging(*, level: str = "info", mask: bool = True) -> logging.Handler:
    """Route tunelab's and uvicorn's loggers through one handler on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    numeric = getattr(logging, level.upper(), logging.INFO)
    for name in ("tunelab", "uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # tunelab.serve.access logs each request
    connection_log = logging.getLogger("uvicorn.error")
    for old_filter in [f for f in connection_log.filters if isinstance(f, ConnectionNoiseFilter)]:
        connection_log.removeFilter(old_filter)
    connection_log.addFilter(ConnectionNoiseFilter())
    if mask:
        from tunelab.serve.masking import install_masking

        install_masking([handler])
    return handler


__all__ = ["ConnectionNoiseFilter", "configure_logging"]
