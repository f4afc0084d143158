"""Hyper-parameter search over any config field with Optuna, choosing on dev (``tunelab search``).

Example:
    >>> from tunelab.search import search
    >>> result = search(  # doctest: +SKIP
    ...     "configs/banking77.yaml", space="space.yaml", trials=20, overrides=["data.dev_size=0.1"]
    ... )  # banking77.yaml has no dev split of its own (dev_size 0), and a search chooses on dev
    >>> result.best_params, result.best_value, result.best_run  # doctest: +SKIP
"""

from __future__ import annotations

from tunelab.search.space import Dimension, load_space
from tunelab.search.study import SearchResult, search

__all__ = ["Dimension", "SearchResult", "load_space", "search"]
