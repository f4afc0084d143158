"""Inference backends: what turns encoded texts into logits, and the registry of artifact formats.

A run folder and every exported artifact (``tunelab export``) share one layout; ``run.json``
names the artifact's ``format`` (absent for a trained run: ``torch``). ``Predictor.load`` looks the
format up here and gets a backend, so predict, eval and serve accept any of them alike. Formats
other than ``torch`` register themselves from ``tunelab.compress`` (imported lazily: ONNX Runtime
is a heavy import a training-only user never needs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from torch import nn

from tunelab.data.encoding import Encoded
from tunelab.errors import RunError
from tunelab.inference.forward import predict_logits


class Backend(Protocol):
    """Computes logits for encoded texts."""

    name: str

    def logits(self, enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
        """Logits (N, num_labels), or (N, T, num_labels) zero-padded per token, in input order."""
        ...


class TorchBackend:
    """PyTorch eager: the model a run trained (adapters merged where the method can), in eval mode."""

    name = "torch"

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    def logits(self, enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
        return predict_logits(self.model, enc, batch_size=batch_size)

    def module(self) -> nn.Module:
        """The torch module (export and pruning start from it)."""
        return self.model


@dataclass(frozen=True)
class LoadContext:
    """What a format loader gets: the artifact folder and what its run.json / config say."""

    run: Any  # tunelab.runs.RunFolder
    config: Any  # tunelab.config.RunConfig
    labels: Any  # tunelab.data.LabelMap
    summary: dict[str, Any]


FormatLoader = Callable[[LoadContext], Backend]
_FORMATS: dict[str, FormatLoader] = {}
# Modules that register formats when imported; looked at only for a name not yet registered.
_PROVIDERS = ("tunelab.compress", "tunelab.ensembling", "tunelab.zeroshot")


def register_format(name: str, loader: FormatLoader) -> None:
    """Register how artifacts of ``format: name`` are loaded; a duplicate is a programming error."""
    if name in _FORMATS:
        raise ValueError(f"artifact format {name!r} is already registered")
    _FORMATS[name] = loader


def get_format(name: str) -> FormatLoader:
    """The loader for an artifact format; an unknown one fails naming the known formats."""
    if not isinstance(name, str):  # a damaged run.json's ["onnx"] was "unhashable type: 'list'"
        for module in _PROVIDERS:
            importlib.import_module(module)
        raise RunError(f"artifact format {name!r} is unknown (known: {', '.join(sorted(_FORMATS))})")
    if name not in _FORMATS:
        for module in _PROVIDERS:
            importlib.import_module(module)
    if name not in _FORMATS:
        raise RunError(f"artifact format {name!r} is unknown (known: {', '.join(sorted(_FORMATS))})")
    return _FORMATS[name]


def model_loader(ctx: LoadContext) -> Any:
    """The ``ModelLoader`` a run's method loads with: the run's base model (checked to be the one
    it was trained on) with a fresh head, or a whole saved model, as the run's task builds them."""
    from tunelab.methods.registry import ModelLoader
    from tunelab.tasks import get_task

    task = get_task(ctx.labels.task)

    def base() -> nn.Module:
        source = base_folder(ctx)
        pooling = ctx.summary.get("pooling") or ctx.config.model.pooling
        # The base by name, for an adapter: is it the one the run was trained on?
        from tunelab.models.fingerprint import check_base

        check_base(ctx.run.root, ctx.summary, ctx.config.model.name, source)
        return task.build_model(source, ctx.labels, pooling=pooling, seed=None)

    return ModelLoader(base=base, whole=task.load_model)


def base_folder(ctx: LoadContext) -> Path:
    """Where the run's base model is now: its ``model.name`` resolved, or the folder it trained from.

    A local base named by a relative path (``../models/tiny``) resolves against the current
    directory, so from anywhere but the training directory the run did not load ("no such
    folder"). When the name is such a local folder that no longer resolves from here, run.json's
    ``model_path_at_training`` (absolute) is used while that folder exists; the caller's
    fingerprint check still refuses other weights there. Bundled names and hub ids resolve as
    before: their recorded path is a cache, not something the user named.
    """
    from tunelab.errors import ModelNotFoundError
    from tunelab.models import resolve_model
    from tunelab.models.resolve import bundled_alias

    name = ctx.config.model.name
    recorded = ctx.summary.get("model_path_at_training")
    trained_at = Path(recorded) if isinstance(recorded, str) and Path(recorded).is_dir() else None
    source = ctx.summary.get("model_source")  # absent in runs from before it was recorded
    if trained_at is not None and source == "local" and not Path(name).expanduser().exists():
        return trained_at  # not resolve_model: a bare folder name ("tiny") would be tried on the hub
    if source == "bundled" and (alias := bundled_alias(name)) is not None:
        # trained on the bundled stand-in for a hub id ("intfloat/multilingual-e5-small"): the same
        # weights again, whatever the id resolves to online now (the original, which the run's
        # fingerprint check refused)
        return resolve_model(alias).path
    if source == "local" and trained_at is None and not Path(name).expanduser().exists():
        # The local folder the run's base was is gone from both places: resolving the name tried
        # the hub ("could not download from the hub (ConnectError)") for what was never a hub id.
        where = f" ({recorded} when it trained)" if isinstance(recorded, str) and recorded != name else ""
        raise ModelNotFoundError(
            f"model {name!r}: the run's base model, a local folder{where}, is not there; put it back "
            "(the run stores only what it trained on top of it; `tunelab merge` makes a LoRA-family "
            "run into one that needs no base)"
        )
    try:
        return resolve_model(name).path
    except ModelNotFoundError:
        if trained_at is None or source not in (None, "local"):
            raise
        return trained_at


def run_method(ctx: LoadContext) -> Any:
    """The run's fine-tuning method (``tunelab.methods.Method``), by the name its run.json records."""
    from tunelab.methods import get_method

    return get_method(ctx.summary.get("method", ctx.config.method.name))


def _load_torch(ctx: LoadContext) -> Backend:
    return TorchBackend(run_method(ctx).load_for_inference(ctx.run.weights, model_loader(ctx)))


register_format("torch", _load_torch)

__all__ = [
    "Backend",
    "LoadContext",
    "TorchBackend",
    "base_folder",
    "get_format",
    "model_loader",
    "register_format",
    "run_method",
]
