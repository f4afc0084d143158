"""The text-based recommender (issue 12): learn a user's interests from the text of what they
engaged with, blend it with collaborative filtering, popularity and recency, rank candidates, and
recommend brand-new items from their text alone.

Modules: ``config`` (rec.yaml), ``data`` (``load_dataset``), ``split`` (``split_chronological``,
``cold_items``), ``textmodel`` (the fine-tuned bi-encoder), ``cf`` (implicit ALS/BPR), ``features``
and ``ranker`` (the learned blend), ``index`` (exact or faiss HNSW), ``recommender``
(``Recommender``, ``Ranking``, ``RankedItem``), ``live`` (live.sqlite), ``builder`` (``build``:
the recommender folder; not build.py, whose module would shadow the function on the package).
Names are imported on first use (PEP 562), so importing the package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RecommendConfig": "tunelab.apps.recommend.config",
    "load_config": "tunelab.apps.recommend.config",
    "Dataset": "tunelab.apps.recommend.data",
    "load_dataset": "tunelab.apps.recommend.data",
    "Split": "tunelab.apps.recommend.split",
    "split_chronological": "tunelab.apps.recommend.split",
    "cold_items": "tunelab.apps.recommend.split",
    "build": "tunelab.apps.recommend.builder",
    "Recommender": "tunelab.apps.recommend.recommender",
    "Ranking": "tunelab.apps.recommend.recommender",
    "RankedItem": "tunelab.apps.recommend.recommender",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
