"""What the peft-backed methods (lora, adalora, ia3, loha, lokr) share: wrapping, saving, loading, merging.

Each of them is a peft tuner that adds weights beside some linear layers. The classification head
(and, with [CLS] pooling, BERT's pooler) are peft ``modules_to_save``, so they train in full and
are saved with the adapter; the base weights are referenced by model name, never copied. No peft
``task_type`` is given: these tuners do not change the forward's inputs or outputs, so one wrapper
serves every task.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torch import nn

from tunelab.atomic import open_permissions
from tunelab.errors import ConfigError, RunError, TunelabError, first_line
from tunelab.methods.registry import BaseSharing, ModelLoader

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
HEAD = "classifier"  # every task's head module (docs/extending.md)
POOLER = "pooler"  # the module making the encoder's pooler_output (BERT's tanh of a linear layer over [CLS])


def head_modules(model: nn.Module, train_pooler: bool) -> list[str]:
    """The modules trained in full beside an adapter: the head, and BERT's pooler when it is read.

    BERT's pooler only matters when classifying from [CLS]; with mean pooling, and in a per-token
    head, it is unused. Its linear layers are named, not the ``BertPooler`` around them: IA3's and
    the LyCORIS tuners' ``merge_and_unload`` expect every module to save to have a ``weight``. Each
    is named from ``pooler`` on (BERT's ``pooler.dense``; ALBERT's pooler is the bare linear layer
    ``pooler``, which a fixed ``pooler.dense`` never found, so it stayed frozen and untrained).
    """
    names = [HEAD]
    uses_pooler = getattr(model, "pooling", "cls") == "cls"
    if train_pooler and uses_pooler:
        for name, module in model.named_modules():
            parts = name.split(".")
            if isinstance(module, nn.Linear) and POOLER in parts and HEAD not in parts:
                at = len(parts) - 1 - parts[::-1].index(POOLER)  # the last "pooler" in the path
                names.append(".".join(parts[at:]))
    return list(dict.fromkeys(names))


# peft's PeftModel reads the base's deprecated ``is_gradient_checkpointing`` (transformers 5 warns
# FutureWarning on each read): hidden where a PeftModel is made, not process-wide, so a program's
# own warnings of that text still show.
_CHECKPOINTING_NOTICE = ".*is_gradient_checkpointing.*"


def wrap(model: nn.Module, peft_config: Any, method: str) -> nn.Module:
    """``get_peft_model``; target modules that match nothing become a one-line ``ConfigError``."""
    from peft import get_peft_model

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CHECKPOINTING_NOTICE, category=FutureWarning)
            return get_peft_model(model, peft_config)
    except ValueError as exc:  # peft reports target modules that match nothing this way
        raise ConfigError(f"method {method}: {exc}".splitlines()[0]) from None


def save(model: nn.Module, folder: Path) -> None:
    model.save_pretrained(folder)  # adapter_model.safetensors + adapter_config.json only
    open_permissions(folder)  # safetensors writes 0600


def load(
    folder: Path, loader: ModelLoader, *, method: str | None = None, peft_type: str | None = None
) -> nn.Module:
    """The adapter onto the run's base model, not merged (``merge`` folds it in).

    ``method`` and ``peft_type`` (the method the run was trained with and the peft type it saves,
    ``loader_for`` binds them) make an adapter of another type a refusal, not another model.
    """
    from peft import PeftModel

    method = _check_files(folder, method, peft_type)
    base = loader.base()
    with _readable(folder, method), _renamed_if_legacy(folder, base) as adapter, warnings.catch_warnings():
        # AdaLoRA's rank_pattern names its lora_E parameters, and peft's check, written for LoRA's
        # (module names), calls every key unmatched; AdaLoRA itself resizes by them all the same.
        warnings.filterwarnings("ignore", message="The following rank_pattern keys did not match")
        warnings.filterwarnings("ignore", message=_CHECKPOINTING_NOTICE, category=FutureWarning)
        return PeftModel.from_pretrained(base, adapter)


def loader_for(method: str, *, peft_type: str | None = None) -> Callable[[Path, ModelLoader], nn.Module]:
    """``load`` for one registered method: it refuses a folder whose adapter is of another type.

    ``peft_type`` is the ``PeftType`` value the method's peft config saves (``"LORA"``), given by the
    method: a LoRA variant registered as ``dora`` (``LoraConfig(use_dora=True)``) saves ``LORA``,
    and the name's ``"DORA"`` refused every run it had trained. Left out (plug-ins written before
    it existed), the method's name in capitals, with a warning saying to give it.
    """
    return functools.partial(load, method=method, peft_type=_peft_type(method, peft_type))


def sharing_for(method: str, *, peft_type: str | None = None, mixed: bool) -> BaseSharing:
    """How ``method``'s adapters share a base in a server; ``attach`` refuses another type's
    (``peft_type`` as for ``loader_for``).

    ``mixed``: the tuner's layers take peft's ``adapter_names`` (LoRA), so one forward may mix
    adapters. IA3, LoHa and LoKr have no such layers: one adapter per forward. (AdaLoRA shares
    nothing: its layers are LoRA layers to peft's forward hooks, which would pass them
    ``adapter_names`` that they ignore, silently running the active adapter.)
    """
    peft_type = _peft_type(method, peft_type)
    return BaseSharing(
        attach=functools.partial(attach, method=method, peft_type=peft_type),
        detach=detach,
        forward=forward_mixed if mixed else forward_one,
        mixed_batches=mixed,
        signature=head_signature,
    )


def _peft_type(method: str, peft_type: str | None) -> str:
    """``peft_type`` as given, else (a plug-in written before it was an argument) ``method`` in
    capitals, as it was then, with a warning: right for a method named as its tuner (``vera``), not
    for a variant (``dora`` saves ``LORA``)."""
    if peft_type is not None:
        return peft_type
    warnings.warn(
        f"method {method}: give peft_adapters.loader_for/sharing_for its peft_type (e.g. "
        f"peft_type='LORA'); taking {method.upper()!r} from the method's name",
        FutureWarning,
        stacklevel=3,
    )
    return method.upper()


def _check_files(folder: Path, method: str | None = None, peft_type: str | None = None) -> str:
    """Refuse what peft would mishandle, before it sees the folder; the method's name for messages
    (``method``, else the adapter's own peft type).

    Without ``adapter_model.safetensors`` peft falls back to a pickled ``adapter_model.bin`` read
    with ``torch.load`` (code from a file someone handed over would run), and peft 0.21 has no
    switch to refuse it; weights load from safetensors only. With neither file, peft took the
    folder for a Hub repo id and said "Repo id must be a string". An ``adapter_config.json`` that
    is not a JSON object failed as "unexpected TypeError: list indices must be integers", one
    without a known ``peft_type`` as "unexpected KeyError". One of another known type (a lora
    run whose weights/ holds an ia3 adapter) loaded silently as that other method.
    """
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise RunError(
            f"{folder}: {ADAPTER_WEIGHTS} is missing (weights load from safetensors only); "
            "train the run again"
        )
    try:
        meta = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return method or "peft"  # missing or not JSON: peft says so, and _readable names the folder
    if not isinstance(meta, dict):
        raise RunError(
            f"{folder}: {ADAPTER_CONFIG} holds a {type(meta).__name__}, not the adapter's settings; "
            "train the run again"
        )
    from peft import PeftType

    if meta.get("peft_type") not in {t.value for t in PeftType}:
        # a prompt/prefix/adapter run's config (tunelab_method, no peft_type) failed as
        # "unexpected KeyError: 'peft_type'"
        found = meta.get("tunelab_method") or meta.get("peft_type")
        raise RunError(
            f"{folder}: {ADAPTER_CONFIG} names no peft adapter (found {found!r}); "
            "the run's run.json and weights/ disagree, or train the run again"
        )
    found = meta["peft_type"]
    if peft_type is not None and found != peft_type:
        raise RunError(
            f"{folder}: {ADAPTER_CONFIG} holds a peft_type {found!r} adapter, but the run was trained "
            f"with method {method} (peft_type {peft_type!r}); the run's run.json and weights/ disagree"
        )
    return method or str(found).lower()


@contextlib.contextmanager
def _readable(folder: Path, method: str) -> Iterator[None]:
    """A damaged adapter file as one line naming the folder (full runs' damage is named so): it was
    "unexpected SafetensorError: Error while deserializing header" or a JSONDecodeError. A
    RuntimeError is torch's "size mismatch" (an adapter_config.json whose r disagrees with the
    weights), a page of lines, one per tensor: the first says enough (running out of memory is one
    too, and is not damage). A TypeError is an adapter_config.json value of the wrong type (``"r":
    "x"``, ``"target_modules": 5``), which peft compares or iterates without checking: it was
    "unexpected TypeError: '<=' not supported between instances of 'str' and 'int'"."""
    import torch
    from safetensors import SafetensorError

    try:
        yield
    except (TunelabError, torch.OutOfMemoryError):
        raise
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise RunError(f"{folder}: cannot read the adapter ({_one_line(exc)}); train the run again") from None
    except TypeError as exc:
        raise RunError(
            f"{folder}: {ADAPTER_CONFIG} options do not fit method {method} ({first_line(exc)}); "
            "train the run again"
        ) from None


def _one_line(exc: BaseException) -> str:
    """The exception's first line, with the next one when the first only introduces a list: torch's
    "Error(s) in loading state_dict for PeftModel:" says nothing without its first item."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[1]}"
    return first_line(exc)


def merge(model: nn.Module) -> nn.Module:
    """Fold the adapter into the base weights: a plain ``transformers`` model, as fast as the base."""
    return model.merge_and_unload()


def attach(
    host: nn.Module | None,
    folder: Path,
    loader: ModelLoader,
    name: str,
    *,
    method: str | None = None,
    peft_type: str | None = None,
) -> nn.Module:
    """Load the adapter in ``folder`` under ``name``: onto ``host`` (a ``PeftModel`` an earlier
    ``attach`` made, its base weights reused), or onto ``loader.base()`` when there is none yet.

    Each adapter keeps its own head (peft's ``modules_to_save`` copy). peft copies the host's
    head for a new adapter, so an adapter with another label count would not fit it: peft is told
    to skip such tensors and they are put in afterwards at their saved shapes (``_fit_heads``).
    ``method`` and ``peft_type`` as for ``load`` (``sharing_for`` binds them).
    """
    from peft import PeftModel
    from safetensors.torch import load_file

    method = _check_files(folder, method, peft_type)
    if host is None:
        base = loader.base()
        with (
            _readable(folder, method),
            _renamed_if_legacy(folder, base) as adapter,
            warnings.catch_warnings(),
        ):
            warnings.filterwarnings("ignore", message="The following rank_pattern keys did not match")
            warnings.filterwarnings("ignore", message=_CHECKPOINTING_NOTICE, category=FutureWarning)
            return PeftModel.from_pretrained(base, adapter, adapter_name=name).eval()
    base = host.get_base_model()
    try:
        with (
            _readable(folder, method),
            _renamed_if_legacy(folder, base) as adapter,
            warnings.catch_warnings(),
        ):
            warnings.filterwarnings("ignore", message=".*(rank_pattern keys did not match|mismatch).*")
            host.load_adapter(adapter, adapter_name=name, is_trainable=False, ignore_mismatched_sizes=True)
            saved = load_file(str(adapter / ADAPTER_WEIGHTS))  # read once for both checks below
            _fit_heads(host, saved, name)
            _check_loaded(host, saved, folder, name)
    except Exception:
        if name in host.peft_config:  # a half-loaded adapter would stay in every layer
            host.delete_adapter(name)
        raise
    return host.eval()


def _fit_heads(host: nn.Module, saved: dict[str, Any], name: str) -> None:
    """Put the saved head tensors that peft skipped (another shape than the host's head) in place.

    peft names an adapter's copy of a module to save ``<module>.modules_to_save.<name>.<param>``
    and saves it as ``<module>.<param>``; peft has no way to give that copy another shape, hence
    this (by hand: a new ``Parameter`` on the copy, which only that adapter uses).
    """
    from torch.nn import Parameter

    marker = f".modules_to_save.{name}."
    for full, param in list(host.named_parameters()):
        if marker not in full:
            continue
        key = full.replace(marker, ".")
        tensor = saved.get(key)
        if tensor is None or tensor.shape == param.shape:
            continue
        owner_name, _, leaf = full.rpartition(".")
        owner = host.get_submodule(owner_name)
        setattr(owner, leaf, Parameter(tensor.to(param.dtype), requires_grad=False))


def _check_loaded(host: nn.Module, saved: dict[str, Any], folder: Path, name: str) -> None:
    """Refuse an adapter whose saved tensors did not all go in at their shapes.

    ``ignore_mismatched_sizes`` (there for heads of another label count) makes peft skip any
    tensor whose shape disagrees, its warning hidden: an ``adapter_config.json`` whose ``r``
    disagrees with the weights attached with ``lora_B`` left at zero, silently (``load`` refuses
    the same folder). The head copies are ``_fit_heads``'s; every other saved tensor is compared.
    """
    from peft import get_peft_model_state_dict

    marker = f".modules_to_save.{name}."
    heads = {full.replace(marker, ".") for full, _ in host.named_parameters() if marker in full}
    loaded = get_peft_model_state_dict(host, adapter_name=name, save_embedding_layers=False)
    for key, tensor in saved.items():
        if key in heads:
            continue
        have = loaded.get(key)
        if have is None:
            problem = f"{key} is not in the model"
        elif tuple(have.shape) != tuple(tensor.shape):
            problem = f"{key} shape {tuple(tensor.shape)} vs {tuple(have.shape)} in the model"
        else:
            continue
        raise RunError(f"{folder}: cannot read the adapter ({problem}); train the run again")


def detach(host: nn.Module, name: str) -> None:
    """Unload one adapter (its layers and its head copy) from a host that keeps others."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*was active which is now deleted.*")
        host.delete_adapter(name)


def forward_mixed(host: nn.Module, batch: dict[str, Any], names: list[str]) -> Any:
    """One forward where row ``i`` goes through adapter ``names[i]`` (peft's mixed-adapter batch)."""
    import torch

    with torch.inference_mode():
        return host(**batch, adapter_names=list(names))


def forward_one(host: nn.Module, batch: dict[str, Any], names: list[str]) -> Any:
    """One forward through one adapter (tuners without mixed batches): activate it, then run."""
    import torch

    if len(set(names)) != 1:
        raise ValueError(f"this method runs one adapter per forward, got {sorted(set(names))}")
    host.set_adapter(names[0])
    with torch.inference_mode():
        return host(**batch)


def head_signature(host: nn.Module, name: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The shapes of ``name``'s own copies of the modules to save (its head): peft stacks the
    head outputs of a mixed batch, so only adapters whose heads agree can share one."""
    marker = f".modules_to_save.{name}."
    return tuple(
        sorted((n.replace(marker, "."), tuple(p.shape)) for n, p in host.named_parameters() if marker in n)
    )


@contextlib.contextmanager
def _renamed_if_legacy(folder: Path, base: nn.Module) -> Iterator[Path]:
    """``folder``, or for an adapter trained before classifiers were transformers models, a
    temporary copy with its keys renamed: its encoder was ``encoder``, BERT's stock classifier
    calls it ``bert`` (every mean-pooled run keeps ``encoder`` and needs nothing)."""
    from safetensors.torch import load_file, save_file

    from tunelab.models.classifier import legacy_key

    path, prefix = folder / ADAPTER_WEIGHTS, "base_model.model."
    weights = {}
    if getattr(base, "base_model_prefix", "encoder") != "encoder" and path.is_file():
        weights = load_file(str(path))
    if not any(k.startswith(prefix + "encoder.") for k in weights):
        yield folder
        return
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy2(folder / ADAPTER_CONFIG, Path(tmp) / ADAPTER_CONFIG)
        renamed = {
            prefix + legacy_key(base, k.removeprefix(prefix)) if k.startswith(prefix) else k: v
            for k, v in weights.items()
        }
        save_file(renamed, str(Path(tmp) / ADAPTER_WEIGHTS))
        yield Path(tmp)
