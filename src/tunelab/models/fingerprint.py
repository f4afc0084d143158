"""A fingerprint of a base model's weights, so an adapter is never merged into another base.

An adapter run (LoRA) stores its adapter and head only; the base is referenced by name
(``minilm-l6``, a folder, a hub id), and a name can come to mean other weights: an edited or
replaced folder, a newer weights package, a re-uploaded hub model. Merging an adapter into the
wrong base loads fine and predicts garbage, silently. So training records the base's fingerprint
in ``run.json`` and loading compares it before merging.

The fingerprint hashes the checkpoint's tensors, not its files: sha256 over every tensor in the
folder's ``*.safetensors`` files in name order (name, dtype, shape, raw bytes), so the same
weights saved again (other metadata, other sharding) still match. It reads the files, not a built
model, on purpose: weights a checkpoint lacks (a pooler, say) are initialised at random on every
load and would make a model's fingerprint differ each time. One pass over the weights: about
0.1 s for MiniLM's 22.7M parameters (measured on this machine).

Only the files transformers loads are read (``model.safetensors``, else the shards its
``model.safetensors.index.json`` names): every ``*.safetensors`` of the folder was read, their
tensors merged by name, so a backup beside the weights (``model_orig.safetensors``, sorting after
``model.safetensors``) was hashed in place of the file loaded, and a LoRA run loaded onto changed
weights without a word.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tunelab.errors import RunError

SUMMARY_KEY = "base_fingerprint"
#: ``run.json``'s digest of the base's architecture settings (``config_fingerprint``).
CONFIG_KEY = "base_config_fingerprint"
#: The ``config.json`` fields that change what the same weights compute (or which weights they
#: are): an edited activation or head count loaded the adapter without a word, predicting otherwise.
#: Listed rather than every field: saving the same model with a newer transformers adds or renames
#: bookkeeping fields (``transformers_version``, ``torch_dtype``/``dtype``), which are no change.
ARCHITECTURE_FIELDS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "layer_norm_eps",
    "position_embedding_type",
    "max_position_embeddings",
    "type_vocab_size",
    "vocab_size",
)


def weights_fingerprint(folder: str | Path) -> str | None:
    """``sha256:<hex>`` of the tensors of the safetensors files a model in ``folder`` loads from;
    ``None`` when there are none."""
    files = _weight_files(Path(folder))
    if not files:
        return None
    import torch
    from safetensors import safe_open

    digest = hashlib.sha256()
    with ExitStack() as stack:
        handles = [stack.enter_context(safe_open(str(f), framework="pt")) for f in files]
        # safe_open handles are not mappings: iterating one does not give its tensor names.
        entries = sorted((key, i) for i, handle in enumerate(handles) for key in handle.keys())  # noqa: SIM118
        times = Counter(name for name, _ in entries)
        for name, i in entries:
            t = handles[i].get_tensor(name).contiguous()
            # a name two files hold (only where no file is the one loaded) says which: each is hashed
            label = f"{name}@{files[i].name}" if times[name] > 1 else name
            digest.update(f"{label}|{t.dtype}|{tuple(t.shape)}\n".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy())  # raw bytes, whatever the dtype
    return f"sha256:{digest.hexdigest()}"


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files transformers loads from ``folder``, in its order of preference:
    ``model.safetensors``, else the shards of ``model.safetensors.index.json``, else (a folder
    named otherwise) every ``*.safetensors``."""
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    try:
        shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()
        return [folder / name for name in sorted(set(shards)) if (folder / name).is_file()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return sorted(folder.glob("*.safetensors"))


def config_fingerprint(folder: str | Path) -> str | None:
    """``sha256:<hex>`` of ``ARCHITECTURE_FIELDS`` in ``folder/config.json`` (a missing field as
    null); ``None`` when the folder has no readable ``config.json``."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    fields = {name: config.get(name) for name in ARCHITECTURE_FIELDS}
    return "sha256:" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _check_config(where: Any, summary: dict[str, Any], model_name: str, base_path: str | Path) -> None:
    """Refuse a base whose architecture settings differ from those recorded (runs from before they
    were recorded are not checked)."""
    expected = summary.get(CONFIG_KEY)
    if not expected or config_fingerprint(base_path) == expected:
        return
    raise RunError(
        f"{where}: its adapter was trained on base {model_name!r} whose config.json had other "
        f"architecture settings ({', '.join(ARCHITECTURE_FIELDS[:6])}, ...) than it has now at "
        f"{base_path}; the same weights compute otherwise there: restore that config.json or train the "
        "run again"
    )


_UNSET: Any = object()


def check_base(
    where: Any,
    summary: dict[str, Any],
    model_name: str,
    base_path: str | Path,
    *,
    found: str | None = _UNSET,
    resuming: bool = False,
) -> None:
    """Refuse to put an adapter on a base other than the one it was trained on.

    Also on ``train --resume``: an adapter half trained on one base and finished on another fits
    neither, and the run would record only the second.

    Args:
        where: the run folder (for the message).
        summary: the run's ``run.json``; a run without a fingerprint (trained before it was
            recorded) is not checked.
        model_name: the base as the run's config names it; ``base_path``: where it resolves now.
        found: the fingerprint of ``base_path`` when the caller has it (hashing is one pass over
            the weights); computed when not given.
        resuming: word the message for a resume (the run is unfinished) rather than a load.

    Raises:
        RunError: one line naming the expected and the found base.
    """
    _check_config(where, summary, model_name, base_path)
    expected = summary.get(SUMMARY_KEY)
    if not expected:
        return
    if found is _UNSET:
        found = weights_fingerprint(base_path)
    if found == expected:
        return
    trained_at = summary.get("model_path_at_training")
    was = f" at {trained_at}" if trained_at and str(trained_at) != str(base_path) else ""
    weights = f"weights {_short(found)}" if found else "no safetensors weights"
    same_folder = Path(model_name).expanduser().resolve() == Path(base_path).resolve()
    now = "now has" if same_folder else f"now loads from {base_path} with"
    if resuming:
        raise RunError(
            f"{where}: its adapter's training began on base {model_name!r}{was} with weights "
            f"{_short(expected)}, but {model_name!r} {now} {weights}; resuming there would finish it "
            "on other weights than it began on: restore that base (the same weights) or start the "
            "run again"
        )
    raise RunError(
        f"{where}: its adapter was trained on base {model_name!r}{was} with weights {_short(expected)}, "
        f"but {model_name!r} {now} {weights}; merging it there would predict garbage: restore "
        "that base (the same weights) or train the run again"
    )


def _short(fingerprint: str) -> str:
    return fingerprint[: len("sha256:") + 12]


__all__ = ["CONFIG_KEY", "SUMMARY_KEY", "check_base", "config_fingerprint", "weights_fingerprint"]
