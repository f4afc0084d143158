"""Checks of values that config files and clients give, shared by the service and the apps.

Kept here, free of heavy imports (no web framework, no database driver), in the service package
the apps may import, so that a monitor config, the server's settings and the recommender's data
reader refuse the same values in the same way (the time checks here are the monitor's documents',
the recommender's files and events', live and over HTTP).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

#: Epoch values from here on are not seconds (1e11 s is the year 5138): most likely milliseconds.
EPOCH_SECONDS_MAX = 1e11


def is_http_url(value: Any) -> bool:
    """An http(s) URL with a host and, if any, a numeric port in range, and no whitespace or control
    characters: one a webhook can be POSTed to.

    ``urlsplit`` accepts ``http://host:80x/`` and only fails when the port is read, at every
    delivery; reading it here refuses the URL when it is configured instead.
    """
    if not isinstance(value, str):
        return False
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        # http.client refuses them at every delivery, with the path and query (a token) in its error
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number or out of range
    except ValueError:  # also an unclosed [ in the host
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def without_secrets(url: str) -> str:
    """The URL as printed: no user:password, no query string or fragment (any may carry a token).

    Also for a URL refused as a webhook (a port out of range, a password with a raw ``#`` or
    ``/``, no scheme): the credentials end at the last ``@`` when ``urlsplit`` ended them earlier,
    and text without ``scheme://host`` is not shown (``user:pw@host`` reads as scheme ``user``).
    """
    try:
        parts = urlsplit(url)
        if not parts.scheme or not parts.netloc:
            return "(a value without scheme://host, not shown)"
        rest = url.split("://", 1)[1] if "://" in url else url
        if "@" in rest[len(parts.netloc) :] and ":" in parts.netloc:
            # "u:p#w@host/x" splits as host "u", port "p": the password ran on to the last "@"
            parts = urlsplit(f"{parts.scheme}://{rest.rsplit('@', 1)[1]}")
    except ValueError:  # an unclosed "[" in the host
        return "(a URL that cannot be parsed)"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}{'?...' if parts.query else ''}"


#: Whole numbers in this range are eight digits, which may be a compact date (``20260302``).
_EIGHT_DIGITS = (10_000_000, 100_000_000)


def refuse_compact_date(number: int) -> None:
    """Refuse eight digits that read as a date (``20260302``): as epoch seconds they are a moment in
    1970-1973, which was stored without a word and made every default trend span half a century."""
    digits = str(number)
    try:
        day = datetime.strptime(digits, "%Y%m%d")
    except ValueError:
        return
    raise ValueError(
        f"time {digits!r} is ambiguous: the date {day:%Y-%m-%d} or epoch seconds "
        f"({datetime.fromtimestamp(int(digits), tz=UTC):%Y-%m-%d %H:%M} UTC)? write the date as "
        f"{day:%Y-%m-%d} (ISO 8601)"
    )


def check_epoch_number(value: Any) -> None:
    """Refuse a number that is no epoch seconds: a boolean (an int subclass, so ``true`` read as
    1970-01-01T00:00:01) or eight whole digits that read as a date (see ``refuse_compact_date``).

    ``value`` is the number as given or as read from a string of digits; anything else passes.

    Raises:
        ValueError: why, starting ``time ...``, for the caller to put after the row or field.
    """
    import numpy as np  # here, not at the top: the light commands import this module

    if isinstance(value, bool | np.bool_):
        raise ValueError(f"time {bool(value)!r} is neither ISO 8601 nor epoch seconds")
    if isinstance(value, int | float | np.integer | np.floating):
        low, high = _EIGHT_DIGITS
        if low <= value < high and float(value).is_integer():
            refuse_compact_date(int(value))
