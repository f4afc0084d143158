"""Sentence embeddings from a bundled or local encoder: what retrieval in the apps is built on.

sentence-transformers does the work (its folder format is what the bundled MiniLM ships, with the
mean pooling the model was trained with); tunelab only resolves the model name offline and
normalises the vectors, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np

from tunelab.errors import ConfigError

_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _encoder(name: str) -> Any:
    from sentence_transformers import SentenceTransformer

    from tunelab.models import resolve_model
    from tunelab.quiet import no_progress_bars, quiet

    path = resolve_model(name).path
    try:
        with quiet(), no_progress_bars():
            encoder = SentenceTransformer(str(path), device="cpu")
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a run folder, a classifier's weights, ...
        raise ConfigError(
            f"{name}: not a sentence encoder ({type(exc).__name__}); give a sentence-transformers or Hugging "
            "Face encoder folder, or minilm-l6 / e5-small-multilingual"
        ) from None
    _require_tokenizer(path, name)
    return encoder


def _require_tokenizer(path: Any, name: str) -> None:
    """A folder without tokenizer files got a 5-token tokenizer from transformers: every word read
    as [UNK], so any two texts were ~0.97 alike, and retrieval ranked at random without an error."""
    from pathlib import Path

    from tunelab.models.classifier import TOKENIZER_FILES, has_tokenizer_files

    folder = Path(path)
    if not folder.is_dir():
        return
    # sentence-transformers' module layout keeps them one folder down (0_Transformer/)
    if not (
        has_tokenizer_files(folder)
        or any(has_tokenizer_files(sub) for sub in folder.iterdir() if sub.is_dir())
    ):
        raise ConfigError(
            f"{name}: no tokenizer files in {folder} ({', '.join(TOKENIZER_FILES)}); save the tokenizer "
            "into the folder with tokenizer.save_pretrained(), or use minilm-l6 / e5-small-multilingual"
        )


def embed(texts: str | Iterable[str], *, model: str = "minilm-l6", batch_size: int = 64) -> np.ndarray:
    """Unit-length embeddings of ``texts`` with the encoder ``model`` (a name or a folder).

    ``texts`` is a list of strings (or a pandas Series, a tuple, any iterable of them); one string
    is one text, as ``predict`` takes it.

    Returns:
        A float32 array of shape (N, H): one row per text, H the encoder's dimension; (0, H) for
        no texts.

    Example:
        >>> vectors = tunelab.embed(["card not arrived", "where is my card"])  # doctest: +SKIP
        >>> float(vectors[0] @ vectors[1])  # cosine similarity  # doctest: +SKIP
    """
    # A str was embedded character by character; a Series failed on ``if not texts``.
    items = [texts] if isinstance(texts, str) else list(texts)
    encoder = _encoder(model)
    if not items:  # (0, H), not (0, 0): stacked or multiplied with other embeddings, it still fits
        # sentence-transformers 5 renamed the method (the old name warns); older ones have only it
        dimension = (
            getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
        )
        return np.zeros((0, dimension() or 0), dtype=np.float32)
    with _LOCK:  # one encoder object is shared by the threads of a server
        vectors = encoder.encode(
            items, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
    return np.asarray(vectors, dtype=np.float32)


def load_encoder(model: str = "minilm-l6") -> Any:
    """A private copy of the sentence-transformers encoder ``model`` (a name or a folder), to fine-tune.

    ``embed`` shares one cached encoder between the apps and a server's threads; training changes
    the weights, so the copy is what an app trains, never that shared object.
    """
    import copy

    return copy.deepcopy(_encoder(model))
