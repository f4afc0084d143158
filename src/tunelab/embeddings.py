"""Sentence embeddings from a bundled or local encoder: what retrieval in the apps is built on.

sentence-transformers does the work (its folder format is what the bundled MiniLM ships, with the
mean pooling the model was trained with); tunelab only resolves the model name offline and
normalises the vectors, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import os
import reprlib
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np

from tunelab.errors import ConfigError, DataError

_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _encoder(name: str) -> Any:
    from safetensors import SafetensorError
    from sentence_transformers import SentenceTransformer

    from tunelab.models import resolve_model

    path = resolve_model(name).path
    refuse_pickled_weights(path, name)
    try:
        with without_library_chatter():
            encoder = SentenceTransformer(str(path), device="cpu")
    # a run folder, a classifier's weights, a truncated .safetensors (SafetensorError: neither an
    # OSError nor a ValueError, it was "unexpected SafetensorError"), ...
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise ConfigError(
            f"{name}: not a sentence encoder ({type(exc).__name__}); give a sentence-transformers or Hugging "
            "Face encoder folder, or minilm-l6 / e5-small-multilingual"
        ) from None
    _require_tokenizer(path, name)
    _require_matching_vocab(encoder, path)
    return encoder


@contextmanager
def without_library_chatter() -> Iterator[None]:
    """No transformers progress bars, and no library warnings or log records below ERROR from the
    calling thread, during the block: what the apps wrap their own encoder saves and loads in.

    ``SentenceTransformer.save`` drew transformers' "Writing model shards" bar into a redirected
    log when an app was built through the Python API (the CLI turns those bars off for the whole
    process, an API caller's process is not ours to change), and turning a sentence encoder into a
    ``CrossEncoder`` logged a WARNING naming a temporary folder. ``_encoder`` loads the same way.
    Per thread (``tunelab.quiet``): a server's other threads keep their warnings and access log.
    """
    from tunelab.quiet import no_progress_bars, quiet

    with quiet(), no_progress_bars():
        yield


# what an --encoder folder of pickled weights is told to do
_SAVE_WITH_SAFETENSORS = (
    "save the encoder with safetensors (save_pretrained / SentenceTransformer.save: "
    "model.safetensors), or use minilm-l6 / e5-small-multilingual"
)


def refuse_pickled_weights(path: Any, name: str, fix: str = _SAVE_WITH_SAFETENSORS) -> None:
    """A folder whose weights are pickles only (``pytorch_model.bin``) is refused before loading.

    Unpickling can run code the file names; ``--nli`` already loads safetensors only, and
    sentence-transformers loaded such an ``--encoder`` folder without a word. Its module folders
    (``0_Transformer/``, ``2_Dense/``) load their own weights, so each is checked too. A folder with
    a ``.safetensors`` file passes: transformers and sentence-transformers load that one first.
    ``fix`` ends the message: what to do instead (a recommender folder's encoders are built, not given).
    """
    from pathlib import Path

    folder = Path(path)
    if not folder.is_dir():
        return
    for where in [folder, *(sub for sub in sorted(folder.iterdir()) if sub.is_dir())]:
        files = [f.name for f in where.iterdir() if f.is_file()]
        # pytorch_model*.bin, the names torch weights are pickled under (not an OpenVINO export's
        # openvino_model.bin beside them in a hub folder, which nothing here loads)
        pickled = sorted(f for f in files if f.startswith("pytorch_model") and f.endswith(".bin"))
        if pickled and not any(f.endswith(".safetensors") for f in files):
            raise ConfigError(
                f"{name}: pickled weights only ({where / pickled[0]}), which could run code when "
                f"loaded; {fix}"
            )


def _require_matching_vocab(encoder: Any, path: Any) -> None:
    """Another model's tokenizer in the folder (ids past the embedding table) failed at the first
    ``embed`` call with an IndexError naming nothing; checked once, when the encoder loads."""
    from tunelab.models.classifier import require_matching_vocab

    tokenizer = getattr(encoder, "tokenizer", None)
    try:
        # the embedding table's own size: what an id must fit, whatever config.json says
        size = encoder[0].auto_model.get_input_embeddings().num_embeddings
    except (AttributeError, IndexError, KeyError, TypeError, NotImplementedError):
        return  # not a transformers encoder (a static-embedding model, ...): nothing to compare
    if tokenizer is not None:
        require_matching_vocab(tokenizer, size, path)


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


def embed(
    texts: str | Iterable[str], *, model: str | os.PathLike[str] = "minilm-l6", batch_size: int = 64
) -> np.ndarray:
    """Unit-length embeddings of ``texts`` with the encoder ``model`` (a name or a folder).

    ``texts`` is a list of strings (or a pandas Series, a tuple, any iterable of them); one string
    is one text, as ``predict`` takes it.

    Returns:
        A float32 array of shape (N, H): one row per text, H the encoder's dimension; (0, H) for
        no texts.

    Raises:
        ConfigError: ``batch_size`` is not a whole number of 1 or more (a numpy integer is one),
            or ``model`` is neither a name nor a folder.
        DataError: ``texts`` is a DataFrame, a mapping, a path or no texts at all, or an item is
            empty or not a string (named by its position, or its index in a Series).

    Example:
        >>> vectors = tunelab.embed(["card not arrived", "where is my card"])  # doctest: +SKIP
        >>> float(vectors[0] @ vectors[1])  # cosine similarity  # doctest: +SKIP
    """
    from tunelab.inference.predictor import _check_batch_size

    # 0 reached sentence-transformers' own ValueError; np.int64(32) is taken, as an int
    batch_size = _check_batch_size(batch_size)
    items = _checked_texts(texts)
    encoder = _encoder(_model_name(model))
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


def encoder_reference(model: str | os.PathLike[str]) -> str:
    """``model`` as something that names the same encoder from any working folder: a local folder
    absolute, a bundled or hub name as given. What an app stores beside its index (the support
    bot's bot.yaml): a relative folder was read from the server's working folder, so a server
    started elsewhere failed every search, or online tried the folder's name as a hub id. Which one
    is a folder is ``resolve_model``'s choice (``local_model_folder``)."""
    from tunelab.models.resolve import local_model_folder  # tunelab.models pulls in torch: not at import

    name = _model_name(model)
    folder = local_model_folder(name)
    return str(folder) if folder is not None else name


def bundled_name(model: str | os.PathLike[str]) -> str | None:
    """The bundled encoder ``model`` names (``minilm-l6`` for itself or for
    ``sentence-transformers/all-MiniLM-L6-v2``), None for a folder or any other name: what an app's
    default threshold on similarities was measured with."""
    from tunelab.models.resolve import bundled_alias  # tunelab.models pulls in torch: not at import

    return bundled_alias(_model_name(model))


def _model_name(model: Any) -> str:
    """A name or a folder as the ``str`` the cache is keyed on: a ``Path`` failed in resolve_model on
    ``.lower()`` with an AttributeError."""
    if not isinstance(model, str | os.PathLike):
        raise ConfigError(f"model: {type(model).__name__}; give a model name or an encoder folder")
    return os.fspath(model)


def _checked_texts(texts: Any) -> list[str]:
    """``texts`` as a list, every item a non-empty string, checked as ``predict`` checks them.

    A DataFrame was embedded as its column names (one silent row of shape (1, H)); a None or a NaN
    in a list or Series failed inside sentence-transformers with a ValueError naming no text.
    """
    from tunelab.data.scripts import has_visible_text
    from tunelab.inference.predictor import _is_series, _refuse_containers

    _refuse_containers(texts, "texts", paths=False)
    if isinstance(texts, str):  # one text, not one per character
        named: list[tuple[str, Any]] = [("text", texts)]
    elif _is_series(texts):
        named = [(f"{texts.name or 'texts'}[{index!r}]", text) for index, text in texts.items()]
    else:
        named = [(f"text {i}", text) for i, text in enumerate(texts, 1)]
    for where, text in named:
        # has_visible_text, not strip(): a zero-width-only text was embedded as the empty text
        if not isinstance(text, str) or not has_visible_text(text):
            raise DataError(f"{where}: empty or not a string ({reprlib.repr(text)}); give non-empty texts")
    return [text for _, text in named]


def load_encoder(model: str | os.PathLike[str] = "minilm-l6") -> Any:
    """A private copy of the sentence-transformers encoder ``model`` (a name or a folder), to fine-tune.

    ``embed`` shares one cached encoder between the apps and a server's threads; training changes
    the weights, so the copy is what an app trains, never that shared object.
    """
    import copy

    return copy.deepcopy(_encoder(_model_name(model)))
