"""Hyper-parameter search over any config field with Optuna, choosing on dev (``tunelab search``).

Example:
    >>> from tunelab.search import search
    >>> result = search("configs/banking77.yaml", space="space.yaml", trials=20)  # doctest: +SKIP
    >>> result.best_params, result.best_value, result.best_run  # doctest: +SKIP
"""

from __future__ import annotations

from tunelab.search.space import Dimension, load_space
from tunelab.search.study import SearchResult, search

__all__ = ["Dimension", "SearchResult", "load_space", "search"]
