"""The methods written here rather than taken from peft (prompt, prefix, adapter): a wrapper around
the task's model, and how its own weights are saved and loaded.

A ``WrappedModel`` holds the task's model as ``model`` and the method's options, and adds the
method's parameters; everything but those and the head is frozen. Saving writes only the trainable
tensors (the method's and the head's) plus the options, under peft's file names
(``adapter_model.safetensors``, ``adapter_config.json`` with a ``tunelab_method`` key instead of
peft's ``peft_type``), so every adapter run's ``weights/`` looks the same. Loading rebuilds the
wrapper on the run's base model with the saved options and copies the tensors in: the result
predicts exactly what the trained model did.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from tunelab.atomic import atomic_write_json, save_safetensors
from tunelab.errors import ConfigError, RunError, first_line
from tunelab.methods.peft_adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, head_modules
from tunelab.methods.registry import ModelLoader

FORMAT = 1


class WrappedModel(nn.Module):
    """A task's model (``self.model``) with a method's own parameters; ``forward`` is the task model's.

    ``config``, ``pooling`` and ``base_model`` are the task model's, so code that reads them (the run
    summary, magnitude pruning) works on the wrapper as on a plain model.
    """

    method = ""  # the registered name, written to adapter_config.json

    def __init__(self, model: nn.Module, options: Any) -> None:
        super().__init__()
        self.model = model
        self.options = options

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def pooling(self) -> str | None:
        return getattr(self.model, "pooling", None)

    @property
    def base_model(self) -> nn.Module:
        """The task model's encoder (what ``transformers`` calls ``base_model``; pruning reads it)."""
        return self.model.base_model

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def forward(self, **kwargs: Any) -> Any:
        return self.model(**kwargs)


def train_only_head(model: nn.Module, train_pooler: bool) -> None:
    """Freeze every weight of the task model but its head (and BERT's pooler when it is read)."""
    for p in model.parameters():
        p.requires_grad_(False)
    wanted = head_modules(model, train_pooler)
    for name, module in model.named_modules():
        if any(name == w or name.endswith("." + w) for w in wanted):
            for p in module.parameters():
                p.requires_grad_(True)


def save(model: WrappedModel, folder: Path) -> None:
    """The trainable tensors (method + head) and the options; never a frozen base weight."""
    tensors = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_safetensors(tensors, folder / ADAPTER_WEIGHTS)
    atomic_write_json(
        folder / ADAPTER_CONFIG,
        {"tunelab_method": model.method, "format": FORMAT, "options": dataclasses.asdict(model.options)},
    )


def load(
    folder: Path,
    loader: ModelLoader,
    *,
    method: str,
    options_cls: Callable[..., Any],
    apply: Callable[[nn.Module, Any], WrappedModel],
) -> WrappedModel:
    """Rebuild the wrapper on the run's base model with the saved options, then copy the tensors in."""
    try:
        meta = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    except (OSError, ValueError, SafetensorError) as exc:  # SafetensorError: a damaged weights file
        # (safetensors' own error, neither OSError nor ValueError: it was "unexpected SafetensorError")
        raise RunError(
            f"{folder}: cannot read the {method} weights ({first_line(exc)}); train the run again"
        ) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("options", {}), dict):
        # a list or a string here failed as "unexpected AttributeError: 'list' object has no
        # attribute 'get'" or "TypeError: argument after ** must be a mapping"
        raise RunError(
            f"{folder}: {ADAPTER_CONFIG} is not a {method} adapter's settings (a JSON object whose "
            "options are an object); train the run again"
        )
    if meta.get("tunelab_method") != method:
        raise RunError(
            f"{folder}: holds weights of method {meta.get('tunelab_method') or meta.get('peft_type')!r}, "
            f"not {method!r}; the run's run.json and weights/ disagree"
        )
    try:
        options = options_cls(**meta.get("options", {}))
    except (TypeError, ConfigError) as exc:  # an unknown option, or a value the method refuses
        raise RunError(
            f"{folder}: {ADAPTER_CONFIG} options do not fit method {method} ({first_line(exc)}); "
            "train the run again"
        ) from None
    model = apply(loader.base(), options)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise RunError(
            f"{folder}: the {method} weights do not fit the model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); train the run again"
        )
    for name, param in params.items():
        if param.shape != tensors[name].shape:
            raise RunError(
                f"{folder}: weight {name} has shape {tuple(tensors[name].shape)}, the model expects "
                f"{tuple(param.shape)}; was the run trained on another base model?"
            )
        param.data.copy_(tensors[name])
    return model.eval()
