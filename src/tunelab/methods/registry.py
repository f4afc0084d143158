"""The registry of fine-tuning methods.

A method is one folder under ``tunelab/methods/`` whose ``__init__.py`` ends with one
``register_method(...)`` call (the peft ``register_peft_method`` habit). The training loop knows
nothing about methods beyond this interface, so adding AdaLoRA, IA3 or prefix tuning means adding a
folder, not editing the loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab.errors import ConfigError, first_line

_REGISTRY: dict[str, Method] = {}
#: The method whose runs hold one whole, plain model: what a merged run (``tunelab merge``) becomes.
PLAIN_METHOD = "full"


@dataclass(frozen=True)
class ModelLoader:
    """How a method gets models when it loads a trained run; the task decides what they are.

    Attributes:
        base: ``base()`` builds the run's pre-trained model with a fresh head (what an adapter
            is loaded onto); it checks the base weights are the ones the run was trained on.
        whole: ``whole(folder)`` loads a complete fine-tuned model from a ``save_pretrained``
            folder (what a method that stores the whole model wrote).
    """

    base: Callable[[], nn.Module]
    whole: Callable[[Path], nn.Module]


@dataclass(frozen=True)
class BaseSharing:
    """How a method's trained adapters share one loaded base model (many adapters, one base, in
    ``tunelab serve``). The server asks a method for this; it never looks at method names.

    A *host* is what ``attach`` returns: the base model with one or more adapters loaded beside
    it under names the caller picks. Every call on a host (attach, detach, forward) must come from
    one thread at a time: adapters are selected per call, and a host is not thread-safe.

    Attributes:
        attach: ``attach(host, folder, loader, name) -> host`` loads the adapter saved in
            ``folder`` (what ``Method.save`` wrote) under ``name``: onto ``host`` when given
            (its base weights are reused, not loaded again), else onto ``loader.base()``.
        detach: ``detach(host, name)`` unloads one adapter (never the last one: the caller drops
            the whole host instead).
        forward: ``forward(host, batch, names) -> model output`` runs ``batch`` (collated
            inputs) with row ``i`` through adapter ``names[i]``, without gradients; the names
            of one batch differ only where ``mixed_batches`` says so.
        mixed_batches: True when one forward may mix adapters (peft LoRA's ``adapter_names``),
            for adapters whose ``signature`` is equal; False: one adapter per forward.
        signature: ``signature(host, name) -> hashable``: adapters with equal signatures may be
            mixed in one forward (their heads' output shapes agree, say).
    """

    attach: Callable[[nn.Module | None, Path, ModelLoader, str], nn.Module]
    detach: Callable[[nn.Module, str], None]
    forward: Callable[[nn.Module, dict[str, torch.Tensor], list[str]], Any]
    mixed_batches: bool
    signature: Callable[[nn.Module, str], Any]


@dataclass(frozen=True)
class Method:
    """What the training loop needs from a fine-tuning method.

    Attributes:
        name: registered name used in configs (``method: lora``).
        config_cls: dataclass of the method's options, validated in its ``__post_init__``.
        apply: ``apply(model, options) -> model`` makes the chosen parameters trainable (for
            adapters it wraps the model); the classification head must stay trainable.
        save: ``save(model, folder)`` writes the trained weights as safetensors into ``folder``.
        load: ``load(folder, loader) -> model`` rebuilds the trained model from what ``save``
            wrote, with a ``ModelLoader`` (methods that store the whole model never load the base
            weights), as it was trained: an adapter stays separate from the base (``merge`` folds
            it in; ``load_for_inference`` does both).
        default_learning_rate: used when ``train.learning_rate`` is not set.
        stores_base: True when ``save`` writes the whole model, so loading needs no base weights.
        on_step: ``on_step(model, step)`` runs after every optimizer step, before the gradients
            are cleared, with the index of the step just taken (0, 1, ...; a resumed run goes on
            counting): what AdaLoRA's ``update_and_allocate(global_step)`` needs. None for most.
        on_train_begin: ``on_train_begin(model, total_steps)`` runs once before the first step
            (and again on a resume) with the number of optimizer steps the run will take:
            AdaLoRA's rank schedule is set from it. None for most.
        loss_term: ``loss_term(model) -> tensor`` is added to the task's loss of every batch
            (AdaLoRA's orthogonality regulariser); the logged loss stays the task's. None for most.
        merge: ``merge(model) -> model`` folds what ``load`` returned into the base weights and
            returns a plain ``transformers`` model (``tunelab merge``; inference merges too, for
            speed). None when the method cannot be folded; ``cannot_merge`` then says why.
        cannot_merge: one sentence, why ``merge`` is None (shown by ``tunelab merge``).
        sharing: how adapters of this method share one base model in a server (``BaseSharing``);
            None (full fine-tuning, methods whose weights are not separable) loads each run whole.
        before_training: ``before_training(model, train, options, seed) -> notes`` trains the
            model on the method's own objective before the head is fitted (``train.head_init``)
            and ``apply`` runs, with the encoded training rows (SetFit's contrastive stage); the
            notes (lines) go to the run's log and summary. It runs again on a resume. None for most.
        tasks: the task names the method can train (``tunelab validate`` and ``train`` refuse
            another before reading data); None: every task. ``tasks_why``: why, for that message.
        extra_positions: ``extra_positions(options) -> int``: positions the method adds before the
            text (a prompt's virtual tokens), so ``validate`` checks ``model.max_length`` plus them
            against the model's position embeddings. None: none.
        checkpoint_state: ``checkpoint_state(model) -> dict`` of what the method keeps outside the
            trainable weights and must survive a kill (AdaLoRA's rank pattern and importance
            averages); saved in every resume checkpoint. None for most.
        restore_state: ``restore_state(model, state)`` puts that back when a run resumes.
        head_only: ``head_only(options) -> bool``: True when with these options the training loop
            trains the task head alone (no pre-trained weight takes the loop's steps, though
            ``before_training`` may have moved some: SetFit's contrastive stage), so
            ``continual.ewc``, a penalty on the loop's steps, has nothing to keep and
            ``tunelab validate --from`` says so before any training (None: never head-only).
        after_training: ``after_training(model) -> notes`` runs after the loop, before the best
            weights are saved: lines for the run's log and summary (AdaLoRA says when early stopping
            came before its final rank allocation). None for most.
        trained_parameters: ``trained_parameters(model, options) -> int``: how many parameters the
            run trained, for run.json's ``trainable_parameters`` (the summary line and report.md
            show it), counted after the loop. None: those the loop left trainable
            (``requires_grad``), which misses what ``before_training`` trained before ``apply``
            froze it (SetFit with ``end_to_end: false`` tunes the whole encoder first).
    """

    name: str
    config_cls: type
    apply: Callable[[nn.Module, Any], nn.Module]
    save: Callable[[nn.Module, Path], None]
    load: Callable[[Path, ModelLoader], nn.Module]
    default_learning_rate: float
    stores_base: bool
    description: str = ""
    on_step: Callable[[nn.Module, int], None] | None = None
    on_train_begin: Callable[[nn.Module, int], None] | None = None
    loss_term: Callable[[nn.Module], torch.Tensor] | None = None
    merge: Callable[[nn.Module], nn.Module] | None = None
    cannot_merge: str = "it defines no way to fold its weights into the base model"
    sharing: BaseSharing | None = None
    before_training: Callable[[nn.Module, Any, Any, int], list[str]] | None = None
    tasks: tuple[str, ...] | None = None
    tasks_why: str = ""
    extra_positions: Callable[[Any], int] | None = None
    checkpoint_state: Callable[[nn.Module], dict[str, Any]] | None = None
    restore_state: Callable[[nn.Module, dict[str, Any]], None] | None = None
    after_training: Callable[[nn.Module], list[str]] | None = None
    head_only: Callable[[Any], bool] | None = None
    trained_parameters: Callable[[nn.Module, Any], int] | None = None

    def check_task(self, task: str) -> None:
        """Raises ConfigError (one line) when the method cannot train ``task``."""
        if self.tasks is not None and task not in self.tasks:
            why = f" ({self.tasks_why})" if self.tasks_why else ""
            raise ConfigError(
                f"method {self.name} trains {' or '.join(self.tasks)} only{why}, not data.task={task}; "
                "use another method (e.g. full)"
            )

    @property
    def shares_base(self) -> bool:
        """True when several runs of this method on one base can be served on one copy of it."""
        return self.sharing is not None

    def count_trained_parameters(self, model: nn.Module, options: Any) -> int:
        """The parameters this run trained: the method's ``trained_parameters`` hook where it has one,
        else those still trainable after the loop (the loop never asks a method's name)."""
        if self.trained_parameters is not None:
            return self.trained_parameters(model, options)
        return trainable_count(model)

    def load_for_inference(self, folder: Path, loader: ModelLoader) -> nn.Module:
        """``load``, then ``merge`` where the method has one: inference costs what the base does."""
        model = self.load(folder, loader)
        return self.merge(model) if self.merge is not None else model

    def parse_options(self, options: dict[str, Any]) -> Any:
        """Validate raw option values into the method's config dataclass."""
        if not isinstance(options, dict):  # `options: 5` was "unexpected TypeError: ... not iterable"
            raise ConfigError(f"method.options={options!r} must be a mapping, e.g. {{r: 16}}")
        allowed = {f.name for f in dataclasses.fields(self.config_cls)}
        # str(): a key YAML reads as a number (`method: {name: lora, 8: 16}`) failed the join
        unknown = sorted(str(k) for k in set(options) - allowed)
        if unknown:
            # method.lora.r=4 (the method's name as a section, as in some other tools' configs)
            # gave option "lora.r": say where the option goes
            nested = [k for k in unknown if "." in k and k.rsplit(".", 1)[-1] in allowed]
            hint = (
                f"; options sit directly under method: method.{nested[0].rsplit('.', 1)[-1]}=..., "
                f"not method.{nested[0]}=..."
                if nested
                else ""
            )
            raise ConfigError(
                f"method {self.name}: unknown option(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(allowed)) or 'none'}){hint}"
            )
        from tunelab.config import coerce_types

        options, problems = coerce_types(self.config_cls, options, f"method.{self.name}")
        if problems:
            raise ConfigError("; ".join(problems.values()))
        try:
            return self.config_cls(**options)
        except (TypeError, ValueError) as exc:
            # ValueError: what a plug-in's __post_init__ raises for a bad value (the docs' options
            # dataclass "validated in its __post_init__"); it was a bare traceback, not one line.
            raise ConfigError(f"method {self.name}: {first_line(exc)}") from None

    # --- the hooks whose results the training run keeps, checked where it takes them ---------

    def plugin(self, hook: str) -> str:
        """How an error names this method's ``hook``: ``method plug-in toy_bitfit (toy_method.apply)``."""
        from tunelab.tasks.base import plugin_name

        return f"method plug-in {self.name} ({plugin_name(getattr(self, hook))})"

    def apply_to(self, model: nn.Module, options: Any) -> nn.Module:
        """``apply``, refusing anything but a model back (None was an AttributeError much later)."""
        applied = self.apply(model, options)
        if not isinstance(applied, nn.Module):
            from tunelab.tasks.base import wrong_return

            raise wrong_return(self.plugin("apply"), "apply", applied, "the model (a torch.nn.Module)")
        return applied

    def notes_of(self, hook: str, returned: Any) -> list[str]:
        """A ``before_training``/``after_training`` result as note lines: None is none, a str one note
        (iterated, "done" became the notes d, o, n, e), else a list (or tuple) of strings."""
        if returned is None:
            return []
        if isinstance(returned, str):
            return [returned]
        if isinstance(returned, list | tuple) and all(isinstance(n, str) for n in returned):
            return list(returned)
        from tunelab.tasks.base import wrong_return

        raise wrong_return(self.plugin(hook), hook, returned, "a list of note lines (str), one str or None")

    def save_into(self, model: nn.Module, folder: Path) -> None:
        """``save``, refusing a folder left empty: the run was marked finished and failed only when loaded."""
        self.save(model, folder)
        if not Path(folder).is_dir() or not any(Path(folder).iterdir()):
            raise ConfigError(
                f"{self.plugin('save')}: save() wrote nothing into {folder}, expected the trained weights "
                "(safetensors files that load() reads back); the run is left unfinished"
            )


def trainable_count(model: nn.Module) -> int:
    """The number of parameters that take gradients now (``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def register_method(method: Method) -> Method:
    """Add a method under its name; a duplicate name is a programming error.

    ``config_cls`` must be a dataclass (its fields are the method's options): a plain class was
    accepted here and failed at the first config read with "must be called with a dataclass type".
    """
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    config_cls = getattr(method, "config_cls", None)
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        from tunelab.tasks.base import plugin_name

        where = plugin_name(method.apply) if callable(getattr(method, "apply", None)) else repr(method.name)
        raise ConfigError(
            f"method plug-in {method.name!r} ({where}): config_cls is {config_cls!r}, not a dataclass; "
            "give a @dataclass of the method's options (an empty one for none)"
        )
    _check_hook_arity(method)
    _REGISTRY[method.name] = method
    return method


# How many positional arguments tunelab passes each hook (the Method docstring's signatures). A hook
# that cannot take them failed only when first called, for ``on_step`` after the first optimizer step,
# as a bare "on_step() takes 1 positional argument but 2 were given" that named neither the plug-in
# nor the hook; checked once here instead, so a wrong plug-in never starts a run.
HOOK_ARGUMENTS = {
    "apply": ("model", "options"),
    "save": ("model", "folder"),
    "load": ("folder", "loader"),
    "on_step": ("model", "step"),
    "on_train_begin": ("model", "total_steps"),
    "loss_term": ("model",),
    "merge": ("model",),
    "before_training": ("model", "train", "options", "seed"),
    "extra_positions": ("options",),
    "checkpoint_state": ("model",),
    "restore_state": ("model", "state"),
    "after_training": ("model",),
    "head_only": ("options",),
    "trained_parameters": ("model", "options"),
}

SHARING_ARGUMENTS = {
    "attach": ("host", "folder", "loader", "name"),
    "detach": ("host", "name"),
    "forward": ("host", "batch", "names"),
    "signature": ("host", "name"),
}


def _check_hook_arity(method: Method) -> None:
    """Refuse (one line, naming the plug-in and the hook) a hook that cannot be called with the
    arguments tunelab passes it, or a hook that is set but not callable."""
    import inspect

    from tunelab.tasks.base import plugin_name

    hooks = [(hook, getattr(method, hook, None), arguments) for hook, arguments in HOOK_ARGUMENTS.items()]
    if method.sharing is not None:
        hooks += [
            (f"sharing.{hook}", getattr(method.sharing, hook, None), arguments)
            for hook, arguments in SHARING_ARGUMENTS.items()
        ]
    for hook, fn, arguments in hooks:
        if fn is None:
            continue
        call = f"{hook}({', '.join(arguments)})"
        if not callable(fn):
            raise ConfigError(
                f"method plug-in {method.name!r}: {hook} is {fn!r}, not a function; tunelab calls {call}"
            )
        try:
            inspect.signature(fn).bind(*arguments)
        except TypeError as exc:
            raise ConfigError(
                f"method plug-in {method.name!r} ({plugin_name(fn)}): tunelab calls {call}, which it "
                f"cannot take ({exc}); give it those {len(arguments)} positional parameter(s)"
            ) from None
        except ValueError:  # no signature to read (some built-ins): it is called as it stands
            continue


def get_method(name: str) -> Method:
    """Look a method up by name; unknown names fail listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"method {name!r} is not known; available methods: {', '.join(available_methods())}"
        ) from None


def available_methods() -> list[str]:
    return sorted(_REGISTRY)
