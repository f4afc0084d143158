"""Run folders: the unit that train writes and evaluate, predict, compress and serve take."""

from tunelab.runs.folder import (
    EXPORT_MARKER,
    PARTIAL_SUFFIX,
    RunFolder,
    find_run,
    find_unfinished_run,
)
from tunelab.runs.listing import RunInfo, list_runs

__all__ = [
    "EXPORT_MARKER",
    "PARTIAL_SUFFIX",
    "RunFolder",
    "RunInfo",
    "find_run",
    "find_unfinished_run",
    "list_runs",
]
