"""The item vectors and their search: exact for small catalogs, faiss HNSW past ``ann_min_items``.

Up to a few thousand items an exact inner product (one matrix-vector product, well under a
millisecond at 5,000 x 384) beats any index. Past that, an HNSW graph keeps candidate retrieval
sub-linear as the catalog grows; items added later (cold start) go into the graph at once, which
HNSW supports without a rebuild. faiss (faiss-cpu) for the reasons given in
``tunelab.apps.support.knowledge``: wheels on every platform, inner-product HNSW, its own index
files; the settings are the same as there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tunelab.apps.support.knowledge import build_hnsw, read_hnsw

VECTORS = "vectors.npy"
ANN = "ann.faiss"


class ItemIndex:
    """Unit-length item vectors (N, H), in catalog order, searchable by inner product.

    Attributes:
        vectors: (N, H) float32.
        ann: the faiss HNSW index over them, or None (exact search).
    """

    def __init__(self, vectors: np.ndarray, ann: Any = None) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.ann = ann

    @property
    def kind(self) -> str:
        """``exact`` or ``hnsw``, for reports."""
        return "exact" if self.ann is None else "hnsw"

    @classmethod
    def build(cls, vectors: np.ndarray, *, ann_min_items: int) -> ItemIndex:
        ann = build_hnsw(vectors) if len(vectors) >= ann_min_items else None
        return cls(vectors, ann)

    def add(self, vectors: np.ndarray) -> None:
        """Append items (M, H): rankable and searchable at once."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.vectors = np.vstack([self.vectors, vectors]) if len(self.vectors) else vectors
        if self.ann is not None:
            self.ann.add(vectors)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items closest to ``query`` (H,): (indices, scores), best first."""
        k = min(k, len(self.vectors))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self.ann is not None:
            scores, found = self.ann.search(np.ascontiguousarray(query[None, :], dtype=np.float32), k)
            keep = found[0] >= 0
            return found[0][keep].astype(np.int64), scores[0][keep]
        every = self.vectors @ query  # (N,)
        top = np.argpartition(-every, k - 1)[:k]
        top = top[np.argsort(-every[top], kind="stable")]
        return top.astype(np.int64), every[top]

    def save(self, folder: str | Path) -> None:
        np.save(Path(folder) / VECTORS, self.vectors)
        if self.ann is not None:
            import faiss

            faiss.write_index(self.ann, str(Path(folder) / ANN))

    @classmethod
    def load(cls, folder: str | Path) -> ItemIndex:
        vectors = np.load(Path(folder) / VECTORS)
        ann = None
        if (Path(folder) / ANN).is_file():
            # another index type, or one over other vectors: a ValueError, which Recommender.load
            # reports as a damaged folder to build again
            ann = read_hnsw(Path(folder) / ANN, vectors, VECTORS)
        return cls(vectors, ann)
