"""Resume state: trainable weights (safetensors), optimizer, scheduler, RNG and loop position.

Only parameters with ``requires_grad`` are stored, so a LoRA checkpoint is a few MB. The folder is
written beside the old one and swapped in with a rename, so a ``kill -9`` during a save leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from tunelab.atomic import atomic_write_bytes
from tunelab.errors import RunError, first_line


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


class CheckpointMismatchError(RunError):
    """Saved weights name a parameter the model has not; ``load_checkpoint`` adds what to delete."""


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy saved trainable weights into ``model``.

    A checkpoint written before classifiers became transformers models names BERT's encoder
    ``encoder.*`` where the stock classifier says ``bert.*`` (under peft's ``base_model.model.``
    prefix for an adapter): such keys are renamed, so a run interrupted before the upgrade resumes.

    Raises:
        RunError: a weight of the checkpoint has no place in ``model``.
    """
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            target = params.get(_param_name(model, params, name))
            if target is None:
                raise CheckpointMismatchError(f"checkpoint weight {name!r} does not fit this model")
            target.copy_(value)


def train_as_checkpointed(model: nn.Module, folder: Path) -> list[str]:
    """Make trainable exactly the parameters the checkpoint in ``folder`` was training.

    A resumed run rebuilds its model from the saved config, whose method options list only what
    the user set; a default that changed since (``full``'s ``freeze_word_embeddings`` became true)
    would otherwise build an optimizer whose parameter groups no longer match the checkpoint's,
    and the resume would fail on torch's size check. The checkpoint is the record of what trained.
    Returns the names whose ``requires_grad`` changed.

    Raises:
        RunError: ``trainable.safetensors`` is missing, empty or junk (the damaged-checkpoint line:
            it was "unexpected SafetensorError" on ``train --resume``).
    """
    try:
        with safe_open(str(folder / "trainable.safetensors"), framework="pt") as saved:
            keys = list(saved.keys())
    except (OSError, SafetensorError) as exc:
        reason = f"trainable.safetensors: {type(exc).__name__}: {first_line(exc)[:160]}"
        raise damaged_checkpoint(folder, reason) from None
    params = dict(model.named_parameters())
    wanted = {_param_name(model, params, name) for name in keys}
    if not wanted & params.keys():
        return []  # nothing recognisable: load_trainable_state reports it
    changed = []
    for name, param in params.items():
        if param.requires_grad != (name in wanted):
            param.requires_grad_(name in wanted)
            changed.append(name)
    return changed


def _param_name(model: nn.Module, params: dict[str, nn.Parameter], name: str) -> str:
    """The name in ``params`` a checkpoint key stands for (itself, or its pre-upgrade rename)."""
    return name if name in params else _current_name(model, name)


def _current_name(model: nn.Module, name: str) -> str:
    from tunelab.models.classifier import legacy_key

    prefix = "base_model.model."
    if name.startswith(prefix) and hasattr(model, "get_base_model"):  # a peft model
        return prefix + legacy_key(model.get_base_model(), name.removeprefix(prefix))
    return legacy_key(model, name)


def save_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp))
    _fsync(tmp)  # on disk before the rename: see _fsync
    os.replace(tmp, path)


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk, as ``atomic_write_bytes`` does.

    A rename reaches the disk before the data of a file written just before it unless that file
    was synced: after a power cut ``checkpoints/last`` could be empty with ``last.old`` deleted.
    A folder that cannot be opened or synced (Windows, some network file systems) is skipped: its
    files are on disk, only the order of the renames is left to the file system.
    """
    folder = path.is_dir()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if folder:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


def _save_torch(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)``, with a refused write an ``OSError`` naming ``path``.

    torch's own file writer reports a full disk (or ``ulimit -f``) as "RuntimeError: [enforce fail
    at inline_container.cc:672] . unexpected pos 704 vs 598", no errno and no file (also when given
    an open file: the OSError is only its context), so ``tunelab train`` ended in "unexpected
    RuntimeError" with no ``--resume`` line. Serialised in memory first (one more copy of the
    optimizer state for the moment of the save; ``getvalue`` hands over the buffer without copying
    it again), then written by ``atomic_write_bytes``, whose errors name the file, and synced there
    (``save_checkpoint`` then syncs every file before the folder's renames, as before).
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def save_checkpoint(
    folder: Path,
    *,
    model: nn.Module,
    optimizer,
    scheduler,
    state: dict[str, Any],
    finished: bool = False,
    method_state: dict[str, Any] | None = None,
    best: Path | None = None,
) -> None:
    """Write the checkpoint beside ``folder`` and swap it in.

    ``best``: the best dev weights so far (``best.safetensors``), kept in the checkpoint as they are
    now (a hard link: ``save_weights`` replaces that file rather than rewriting it). Outside the
    checkpoint, an improvement after it survived a kill: a resume that replayed differently (bf16
    falling back to fp32 on another CPU) ended on the killed attempt's weights while run.json
    named the checkpoint's best step.

    ``finished``: the loop has taken its last step, so nothing will step the optimizer or the
    schedule again (``--resume`` takes no overrides): their state is left out. For full
    fine-tuning that is two thirds of the bytes, and about a second of a short run (profiled:
    1.1 s of a 5.9 s one-epoch loop on 1,024 BANKING77 rows).
    """
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
    extra: dict[str, Any] = {
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": _plain_numpy_state(),
        "python_rng": random.getstate(),
    }
    if not finished:
        extra |= {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    if method_state is not None:  # Method.checkpoint_state: e.g. AdaLoRA's rank allocation
        extra["method_state"] = method_state
    _save_torch(extra, tmp / "optimizer.pt")
    if best is not None and best.is_file():
        try:
            os.link(best, tmp / BEST_FILE)
        except OSError:  # a file system without hard links
            shutil.copy2(best, tmp / BEST_FILE)
    (tmp / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    # Every file and the folder on disk before the renames, and the renames before `.old` goes: a
    # power cut leaves a complete `last` or `last.old` (see _fsync). One fsync a file: the files
    # are written anyway, this only waits for them.
    for written in tmp.iterdir():
        _fsync(written)
    _fsync(tmp)
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        # A kill during the clean-up below can leave a half-removed `.old`; `folder` is complete here,
        # so the leftover is not needed (and a non-empty target would make the rename fail).
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    _fsync(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


BEST_FILE = "best.safetensors"


def restore_best(checkpoint: Path, best: Path, *, best_step: int | None) -> None:
    """Put back the best weights the checkpoint holds, dropping any written after it.

    A checkpoint written before it held them (``best_step`` set, no file in it) leaves ``best`` as
    it is: the old behaviour, rather than forgetting the best weights.
    """
    kept = checkpoint / BEST_FILE
    if kept.is_file():
        tmp = best.with_name(f".{best.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(kept, tmp)
        except OSError:
            shutil.copy2(kept, tmp)
        os.replace(tmp, best)
    elif best_step is None:  # no improvement before the checkpoint: a later one is the killed attempt's
        best.unlink(missing_ok=True)


def find_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint: ``last``, or ``last.old`` if a kill hit between renames."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if (candidate / "state.json").is_file():
            return candidate
    return None


def checkpoint_to_resume(folder: Path) -> Path | None:
    """``find_checkpoint`` for ``train --resume``, first refusing a plain file where a folder belongs.

    A file at ``checkpoints`` or ``checkpoints/last`` (``.old``, ``.tmp``) reads as "no checkpoint",
    so the run started over, and then ended in "unexpected NotADirectoryError" when it saved its
    first checkpoint (or cleared ``checkpoints/best.safetensors``) over it.

    Raises:
        RunError: one of those paths is not a folder: the line names it and what to delete.
    """
    siblings = [folder.with_name(folder.name + end) for end in ("", ".old", ".tmp")]
    for path in (folder.parent, *siblings):
        if path.exists() and not path.is_dir():
            raise RunError(
                f"{path}: a file, not a checkpoint folder (`train --resume` restores the run from one); "
                f"{_start_over(folder, delete=path)}"
            )
    return find_checkpoint(folder)


def load_checkpoint(
    folder: Path,
    *,
    model: nn.Module,
    optimizer,
    scheduler,
    restore_method: Callable[[nn.Module, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Put the model, optimizer, scheduler and RNGs back as the checkpoint in ``folder`` left them.

    Returns:
        The loop position (``state.json``).

    Raises:
        RunError: a file of the checkpoint is cut short, junk or of another shape (one line naming
            the folder), or ``optimizer.pt`` names code the ``weights_only`` unpickler refuses.
    """
    reading = "trainable.safetensors"  # the file whose content is being restored, for the error
    try:
        load_trainable_state(model, load_file(str(folder / reading)))
        reading = "optimizer.pt"
        extra = _load_extra(folder / reading)
        if restore_method is not None and "method_state" in extra:
            restore_method(model, extra["method_state"])
        if "optimizer" in extra:  # absent from a finished loop's checkpoint: nothing steps them again
            optimizer.load_state_dict(extra["optimizer"])
            scheduler.load_state_dict(extra["scheduler"])
        torch.set_rng_state(extra["torch_rng"])
        np.random.set_state(_numpy_state(extra["numpy_rng"]))
        random.setstate(extra["python_rng"])
        reading = "state.json"
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        if not isinstance(state, dict):
            raise ValueError("state.json holds no object")
        return state
    except CheckpointMismatchError as exc:
        # "start the run again without --resume" was refused while <name>.partial exists
        raise RunError(f"{folder}: {exc}; {_start_over(folder)}") from None
    except RunError:
        raise
    except (
        OSError, ValueError, RuntimeError, KeyError, TypeError, IndexError, AttributeError, EOFError,
        SafetensorError, pickle.UnpicklingError,
    ) as exc:  # fmt: skip
        # a cut optimizer.pt: torch's RuntimeError "PytorchStreamReader failed"; junk safetensors:
        # SafetensorError; an empty file: EOFError; another layout: KeyError, TypeError, ValueError
        reason = f"{reading}: {type(exc).__name__}: {first_line(exc)[:160]}"
        raise damaged_checkpoint(folder, reason) from None


def damaged_checkpoint(folder: Path, reason: str) -> RunError:
    """The one-line error for a checkpoint that cannot be restored: what to delete, or how to go on."""
    return RunError(f"{folder}: a damaged checkpoint ({reason}); {_start_over(folder)}")


def _start_over(folder: Path, *, delete: Path | None = None) -> str:
    """What gets a run going again past the checkpoint ``folder`` it cannot use.

    "Train again without --resume" was refused while ``<name>.partial`` exists (an unfinished run of
    that name); ``--resume`` without a checkpoint trains the run from its first step instead.
    ``delete``: what is in the way when it is not ``folder`` itself (a file named ``checkpoints``).
    """
    run = folder.parent.parent if folder.parent.name == "checkpoints" else "<run>"  # <run>/checkpoints/last
    older = folder.with_name(folder.name + ".old")  # find_checkpoint's fallback would resume from it
    target = folder if delete is None else delete
    what = f"{target} and {older}" if older.is_dir() and target != older else str(target)
    return (
        f"delete {what} and run `tunelab train --resume {run}` again to start the run over, "
        f"or delete {run} and train again"
    )


def _load_extra(path: Path) -> dict[str, Any]:
    """``optimizer.pt`` through torch's ``weights_only`` unpickler: tensors, containers, numbers and
    text, nothing that runs code. ``--resume`` of a run folder received from elsewhere must not run
    what a crafted file names (a pickle's ``__reduce__`` calling ``os.system``, say).

    Checkpoints written before numpy's RNG state was stored as a tensor pickled it as an ndarray:
    the numpy globals that rebuild an array are allowed for this load only (torch's
    ``safe_globals`` context, not ``add_safe_globals``, which would allow them process-wide).

    Raises:
        RunError: the file holds anything else, or is no torch checkpoint at all.
    """
    allowed = [g for g in _numpy_array_globals() if g not in torch.serialization.get_safe_globals()]
    try:
        with torch.serialization.safe_globals(allowed):
            extra = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's first line only says to load with weights_only=False: the unpickler's own reason follows
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        detail = next((line for line in lines if not line.startswith(("Check the", "Please file"))), "")
        if not _names_code(str(exc)):  # junk, a cut file: nothing it names was refused
            reason = f"{path.name}: {detail.rstrip('.') or 'not a torch checkpoint'}"
            raise damaged_checkpoint(path.parent, reason) from None
        detail = f" ({detail.rstrip('.')})" if detail else ""
        raise RunError(
            f"{path}: refused to load it{detail}: a checkpoint may "
            "hold only tensors, numbers and text, as anything else could run code when unpickled; "
            f"resume only checkpoints tunelab wrote: {_start_over(path.parent)}"
        ) from None
    if not isinstance(extra, dict):
        raise RunError(f"{path}: not a tunelab checkpoint; {_start_over(path.parent)}")
    return extra


#: What torch's weights_only unpickler says when a file names a function or class it does not allow
#: (what a crafted checkpoint does to run code); other UnpicklingErrors are a damaged file.
_REFUSALS = ("GLOBAL", "add_safe_globals", "reduce for unrecognized function")


def _names_code(message: str) -> bool:
    return any(refusal in message for refusal in _REFUSALS)


def _numpy_array_globals() -> list[Any]:
    """What unpickling a numpy uint32 array needs (torch's documented allow-list for numpy arrays):
    ``_reconstruct`` under numpy 2's module name and numpy 1's, ``ndarray``, ``dtype`` and the
    uint32 dtype's class (the RNG key's)."""
    reconstruct = np.zeros(1).__reduce__()[0]
    return [
        (reconstruct, "numpy._core.multiarray._reconstruct"),
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        type(np.dtype(np.uint32)),
    ]


def _plain_numpy_state() -> tuple[str, torch.Tensor, int, int, float]:
    """numpy's legacy RNG state with its key as a tensor: loads with ``weights_only`` and no numpy."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    key_tensor = torch.from_numpy(np.asarray(key, dtype=np.int64))
    return str(name), key_tensor, int(pos), int(has_gauss), float(cached)


def _numpy_state(saved: tuple[Any, ...]) -> tuple[Any, ...]:
    """The state ``np.random.set_state`` takes from a saved one (a tensor key, or an older
    checkpoint's ndarray)."""
    name, key, *rest = saved
    if isinstance(key, torch.Tensor):
        key = key.numpy().astype(np.uint32)
    return (name, key, *rest)
