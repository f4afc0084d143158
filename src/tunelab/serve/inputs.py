"""Checks of values that config files and clients give, shared by the service and the apps.

Kept here, free of heavy imports (no web framework, no database driver), in the service package
the apps may import, so that a monitor config, the server's settings and the recommender's data
reader refuse the same values in the same way.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

#: Epoch values from here on are not seconds (1e11 s is the year 5138): most likely milliseconds.
EPOCH_SECONDS_MAX = 1e11


def is_http_url(value: Any) -> bool:
    """An http(s) URL with a host and, if any, a numeric port in range: one a webhook can be POSTed to.

    ``urlsplit`` accepts ``http://host:80x/`` and only fails when the port is read, at every
    delivery; reading it here refuses the URL when it is configured instead.
    """
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number or out of range
    except ValueError:  # also an unclosed [ in the host
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
