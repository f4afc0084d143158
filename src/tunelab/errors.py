"""Domain errors.

Every error a user can cause is a ``TunelabError`` whose message is one line naming the place
(file, row, field) and the fix. The CLI prints ``error: <message>`` and exits 2 instead of
showing a traceback; library callers catch the specific subclass.
"""

from __future__ import annotations


class TunelabError(Exception):
    """Base class for errors caused by user input; the message is shown as is."""


class ConfigError(TunelabError):
    """A run config field is missing or has a bad value."""


class DataError(TunelabError):
    """A data file is missing, unreadable or does not fit the config."""


class ModelNotFoundError(TunelabError):
    """A model name resolves to no local weights and cannot be downloaded."""


class RunError(TunelabError):
    """A run folder is missing, incomplete or damaged."""
