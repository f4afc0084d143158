"""Run folders: the unit that train writes and evaluate, predict, compress and serve take."""

from tunelab.runs.folder import PARTIAL_SUFFIX, RunFolder, RunInfo, find_run, list_runs

__all__ = ["PARTIAL_SUFFIX", "RunFolder", "RunInfo", "find_run", "list_runs"]
