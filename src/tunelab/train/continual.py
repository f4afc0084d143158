"""Continual learning: continue a finished run with new rows and new labels (``train --from RUN``).

The continued run is an ordinary run folder. What makes it a continuation:

- its config is the previous run's, with the data files reset (the new data is named on the
  command line, and read as a fresh run reads its files: RUN's reading options reset) and
  ``data.labels`` set to the previous run's labels, so their ids stay stable and new labels are
  appended after them;
- its model starts as the previous run's (adapters merged), with the head grown: the old rows
  are copied, the new rows start as the base model's fresh head would (``grow_into``);
- its training rows are the new rows plus *rehearsal* rows: a stratified sample of the previous
  run's training rows, which every run stores in its folder (``rehearsal.jsonl``) for this;
- optionally a distillation or EWC penalty is added to the loss
  (``tunelab.train.continual_penalties``).

Dropping labels is refused: every served client of the previous run relies on its label ids, and
a label with no new rows is still learnt from its rehearsal rows. A run with fewer labels is a
fresh run (``tunelab train`` without ``--from``).
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab.atomic import atomic_write_text
from tunelab.config import ContinualConfig, RunConfig
from tunelab.data import LabelMap, Splits
from tunelab.data.dataset import Dataset
from tunelab.data.file_options import READING_FIELDS
from tunelab.data.scripts import has_visible_text
from tunelab.errors import ConfigError, DataError, RunError, first_line
from tunelab.runs.json_files import read_run_object
from tunelab.runs.labels_check import read_run_labels

logger = logging.getLogger(__name__)

REHEARSAL_FILE = "rehearsal.jsonl"


def continued_config(from_run: str | Path, overrides: list[str] | None) -> RunConfig:
    """The previous run's config with its data files (and their reading options) reset, its labels
    kept, and ``overrides`` on top.

    Raises:
        RunError: ``from_run`` is not a finished run folder.
        ModelNotFoundError: its base was a local folder that is gone (``_base_found``).
        ConfigError: an override changes the task or the base model (checked in ``open_previous``).
    """
    from tunelab.config import apply_override
    from tunelab.runs.folder import free_name

    run, summary = _find(from_run)
    raw = _read_run_file(run.config_json)
    trained_with = _method_name(raw.get("method"))
    data = dict(raw.get("data") or {})
    # The previous files are old data: what the continued run keeps of them is the rehearsal sample.
    # Its labels (unless an override gives some) come back in ``with_previous_labels``, below.
    # A few-shot draw (data.shots) sampled the old file: the new rows are all kept unless asked again.
    data.update(train=None, dev=None, test=None, labels=None, shots=None, shots_seed=None)
    # How RUN's files were laid out (Financial PhraseBank: `@`, no header, Latin-1) describes those
    # files, not the new ones: a plain CSV read so failed as "empty label". The new files are read
    # as a fresh run reads its files (each one's separator sniffed, a header row), unless data.*
    # reading options are given again on the command; config.json records that, so --resume reads
    # them alike. (Detecting one file's options and applying them to dev and test misread those.)
    for name in READING_FIELDS:
        data.pop(name, None)
    raw["data"] = data
    # A local base named by a relative path resolves against the current directory: from another
    # one, the folder recorded at training (as loading the run finds it), so this run can load it.
    model = dict(raw.get("model") or {})
    found = _base_found(RunConfig.from_dict(raw), summary)
    if found is not None:
        model["name"] = found
        raw["model"] = model
    # The unlabelled texts are old data too: pseudo-labelled again by the previous (fine-tuned)
    # model, they would repeat its own labels, and texts of its test split could be trained on.
    raw["self_training"] = {**(raw.get("self_training") or {}), "unlabeled": None, "label_names": False}
    # The folder found, absolute: a later --resume from another directory still finds it.
    raw["continual"] = {**(raw.get("continual") or {}), "from_run": str(Path(run.root).resolve())}
    raw["name"] = None
    # The adapter RUN's learning rate was set for: a merged run's (its config says full), or RUN's own
    merged = (summary.get("merged_from") or {}).get("method") if isinstance(summary, dict) else None
    adapter = merged if isinstance(merged, str) else None
    if adapter is None and _is_adapter(raw.get("method")):
        adapter = _method_name(raw.get("method"))
    if _renames_method(raw.get("method"), overrides or []):
        # RUN's method options (a LoRA run's r=16) belong to its method: under the new one
        # (method=full, as the adapter refusal advises) they would be unknown options.
        raw["method"] = {"name": _method_name(raw.get("method"))}
    elif not _names_method(overrides or []) and _is_adapter(raw.get("method")):
        # A LoRA (IA3, ...) RUN is merged and continued as one plain model, which trains `full`, as
        # the README says: inheriting method=lora, the plain command was refused ("use method=full").
        logger.info(
            "--from %s: a %s run is merged and continued with method=full",
            run.root,
            _method_name(raw.get("method")),
        )
        raw["method"] = {"name": "full"}
    output_dir = Path(os.path.expanduser(str(raw.get("output_dir") or "runs")))
    if not output_dir.is_absolute() and not _names_key(overrides or [], "output_dir"):
        # Beside RUN, as the README says: RUN's relative output_dir resolved against this directory
        # put the continued run (from another one) under ./runs, or failed there.
        raw["output_dir"] = str(_named(run.root).parent)
    if _names_key(overrides or [], "continual.rehearsal") and not _names_key(
        overrides or [], "continual.rehearsal_total"
    ):
        # RUN's rehearsal_total takes precedence over any rehearsal (``ContinualConfig``): inherited,
        # it silently overrode the continual.rehearsal=N|all given here, and capped this run's own
        # stored sample. Asking for rows a label is asking for no total.
        continual = raw["continual"]
        if continual.get("rehearsal_total") is not None:
            logger.info(
                "--from %s: continual.rehearsal given, so that run's continual.rehearsal_total=%s is not "
                "inherited",
                run.root,
                continual["rehearsal_total"],
            )
        raw["continual"] = {**continual, "rehearsal_total": None}
    for item in overrides or []:
        apply_override(raw, item)
    # Not a word on the learning rate of a run that open_previous or read_rehearsal refuses: the
    # warning came first, about a run that is not trained at all.
    refused = _merge_refusal(str(from_run), trained_with) or _refused_rehearsal(run.root, raw)
    _drop_the_adapters_learning_rate(raw, adapter, overrides or [], run.root, warn=refused is None)
    if raw.get("name") is None:  # the previous run keeps its name: <name>-2, -3, ... beside it
        raw["name"] = free_name(Path(str(raw.get("output_dir", "runs"))), _named(run.root).name)
    return with_previous_labels(RunConfig.from_dict(raw))


def _drop_the_adapters_learning_rate(
    raw: dict[str, Any], adapter: str | None, overrides: list[str], root: Path, *, warn: bool = True
) -> None:
    """Leave out RUN's ``train.learning_rate`` when it was set for ``adapter`` and this run trains with
    another method (a merged or adapter RUN continued as ``full``), unless the command gives one.

    A LoRA run's 1e-3 fine-tuned the whole model at 20x full's rate, without a word. ``warn``
    False: left out silently (the continuation is refused before training).
    """
    train = raw.get("train") if isinstance(raw.get("train"), dict) else {}
    now = _method_name(raw.get("method"))
    if (
        adapter is None
        or now == adapter
        or train.get("learning_rate") is None
        or _names_key(overrides, "train.learning_rate")
        or _names_key(overrides, "train")
    ):
        return
    raw["train"] = {**train, "learning_rate": None}
    if not warn:
        return
    logger.warning(
        "--from %s: its train.learning_rate=%s was set for %s; method %s trains at its own default "
        "rate unless train.learning_rate is given",
        root,
        train["learning_rate"],
        adapter,
        now,
    )


def _merge_refusal(where: str, method: str) -> ConfigError | None:
    """The refusal of a RUN trained with ``method``, an adapter that cannot be folded into the base
    model (a prompt, a prefix, a bottleneck adapter); None where it can be (or the method is unknown:
    refused later, naming it).

    A continued run starts from the previous model's weights as one plain model: such an adapter
    has none to give (it failed later as "the previous run's model does not fit this one").
    """
    from tunelab.methods import get_method

    try:
        before = get_method(method)
    except ConfigError:
        return None
    if before.stores_base or before.merge is not None:
        return None
    return ConfigError(
        f"--from {where}: that run is method={before.name}, which cannot be folded into the base model "
        f"({before.cannot_merge}), so it cannot be continued; train a fresh run on all the data"
    )


def _refused_rehearsal(root: Path, raw: dict[str, Any]) -> RunError | None:
    """``read_rehearsal``'s refusal of RUN (at ``root``) for the continued run's ``raw`` config: its
    rehearsal is on and RUN stores no sample; None otherwise (or where ``raw``'s continual section is
    invalid: refused later, naming it)."""
    try:
        cc = ContinualConfig(**(raw.get("continual") or {}))
    except (ConfigError, TypeError, ValueError):
        return None
    return _missing_rehearsal(root, cc)


def _missing_rehearsal(root: Path, cc: ContinualConfig) -> RunError | None:
    """The refusal of a continued run whose rehearsal is on (``cc``) when RUN, at ``root``, holds no
    stored sample; None where rehearsal is off or the file is there.

    A member's copy inside an ensemble (``weights/<member>``) has none by design (the ensemble leaves
    the training texts out): it was said to be a run "trained before tunelab stored a sample".
    """
    if (cc.rehearsal == 0 and not cc.rehearsal_total) or (Path(root) / REHEARSAL_FILE).is_file():
        return None
    fix = "set continual.rehearsal=0 to continue without rehearsal" + (
        " (with continual.head=copy)" if cc.head == "probe" else ""
    )
    ensemble = _ensemble_holding(Path(root))
    if ensemble is not None:
        folder, source = ensemble
        instead = f"its source run {source}" if source else "the run it was copied from"
        return RunError(
            f"--from {cc.from_run}: that folder is a member's copy inside the ensemble {folder}, which "
            f"leaves out {REHEARSAL_FILE}; continue {instead} instead (then ensemble again), or {fix}"
        )
    return RunError(
        f"--from {cc.from_run}: no {REHEARSAL_FILE} in that run (it was trained before tunelab stored a "
        f"rehearsal sample, or the file was removed); {fix}"
    )


def _ensemble_holding(root: Path) -> tuple[Path, str | None] | None:
    """The ensemble folder ``root`` is a member's copy in (``<ensemble>/weights/<member>``, the
    ensemble's run.json saying ``format: ensemble`` as ``_find`` reads it) and the member's source run
    it records (None where it records none); None where ``root`` is no such copy."""
    from tunelab.runs.json_files import JsonFileError, read_json_object

    root = Path(os.path.expanduser(str(root))).resolve()
    if root.parent.name != "weights":
        return None
    folder = root.parent.parent
    try:
        summary = read_json_object(folder / "run.json")
    except (OSError, JsonFileError):  # no run.json, or a damaged one: not known to be an ensemble
        return None
    if summary.get("format") != "ensemble":
        return None
    for member in summary.get("members") or []:
        if not isinstance(member, dict) or not isinstance(member.get("path"), str):
            continue
        if (folder / member["path"]).resolve() == root:
            source = member.get("source")
            return folder, source if isinstance(source, str) and source else None
    return folder, None


def _base_found(config: RunConfig, summary: dict[str, Any]) -> str | None:
    """The folder a run's relative local base (``model.name``) is found in from here, when that is
    not what the name itself says (see ``tunelab.inference.backends.base_folder``); else None.

    Raises:
        ModelNotFoundError: the base was a local folder, gone from both the name and the folder
            recorded at training (``base_folder``'s one line: put it back).
    """
    from tunelab.inference.backends import LoadContext, base_folder

    name = config.model.name
    if summary.get("model_source") != "local" or Path(name).expanduser().exists():
        return None
    # A base gone from both places raises here: left to the model check, the bare folder name
    # ("tiny") was resolved as a hub id (a ~20 s timeout, or "not in the local hub cache" offline).
    folder = base_folder(LoadContext(run=None, config=config, labels=None, summary=summary))
    return str(Path(folder).resolve())


def with_previous_labels(cfg: RunConfig) -> RunConfig:
    """``cfg`` with ``data.labels`` set to its ``continual.from_run``'s labels when it gives none.

    Both ways of continuing a run come through here: ``train --from RUN`` (``continued_config``)
    and a config (or override) that names ``continual.from_run`` itself, with its own data and
    recipe. Without the old order the new label set would be sorted afresh and the old ids move.

    Raises:
        RunError: ``from_run`` is not a finished run folder (one line).
    """
    if cfg.continual.from_run is None or cfg.data.labels is not None:
        return cfg
    run, summary = _find(cfg.continual.from_run)
    # checked against run.json and the model: an edited labels.json grew (or cut) the head silently
    return replace(cfg, data=replace(cfg.data, labels=read_run_labels(run, summary).names))


def _method_name(method: Any) -> str:
    return method if isinstance(method, str) else str((method or {}).get("name", "full"))


def _names_method(overrides: list[str]) -> bool:
    return any(item.partition("=")[0].strip() in ("method", "method.name") for item in overrides)


def _names_key(overrides: list[str], key: str) -> bool:
    return any(item.partition("=")[0].strip() == key for item in overrides)


def _named(root: Path) -> Path:
    """``root`` with a name: ``.`` or ``..`` (RUN given from inside it) resolved, so that its name
    and the folder it is in are RUN's (``.`` has neither: the run was named ``-2``)."""
    root = Path(root)
    return root.resolve() if root.name in ("", "..") else root


def _is_adapter(method: Any) -> bool:
    """RUN's method keeps an adapter over the base (a continued run cannot train one over RUN)."""
    from tunelab.methods import get_method

    try:
        return not get_method(_method_name(method)).stores_base
    except ConfigError:  # an unknown method: refused later, naming it
        return False


def _renames_method(method: Any, overrides: list[str]) -> bool:
    """Whether an override (``method=X`` or ``method.name=X``) names another method than RUN's."""
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() in ("method", "method.name", "method.options.name") and value.strip() != _method_name(
            method
        ):
            return True
    return False


def _find(from_run: str | Path) -> tuple[Any, dict[str, Any]]:
    """The finished run ``from_run`` names and its summary, if it has trained weights to continue.

    Raises:
        RunError: no such run, or it is a zero-shot run or an exported artifact (one line each).
    """
    from tunelab.runs import find_run

    try:
        run = find_run(from_run)
    except RunError as exc:
        raise RunError(f"--from: {exc}") from None
    # Whole or not at all: read as {} (``read_summary``), a damaged run.json of an ensemble or an
    # exported artifact was continued as a torch run, and a relative local base was not found.
    summary = _read_run_file(run.run_json) if run.run_json.exists() else {}
    kind = summary.get("format", "torch")
    if kind == "zeroshot":
        raise RunError(
            f"--from {from_run}: a zero-shot run has no trained weights to continue; train a fresh run "
            "(tunelab train CONFIG)"
        )
    if kind == "ensemble":
        raise RunError(
            f"--from {from_run}: an ensemble cannot be trained; continue one of its member runs "
            "(run.json's members), then ensemble again"
        )
    if kind != "torch":
        raise RunError(
            f"--from {from_run}: an exported {kind} artifact cannot be trained; continue from the run it "
            "was exported from"
        )
    return run, summary


def _read_run_file(path: Path) -> dict[str, Any]:
    """The previous run's config.json or run.json, as a JSON object.

    Read by hand, a damaged config.json was "unexpected JSONDecodeError" (or AttributeError for a
    JSON list, UnicodeDecodeError, FileNotFoundError), naming no file.

    Raises:
        RunError: the file cannot be read, is not UTF-8, not JSON or not an object (one line naming it).
    """
    return read_run_object(
        path,
        lambda why: (
            f"--from: {path}: cannot read ({why}); that run folder is damaged: "
            "train it again to continue from it"
        ),
    )


@dataclass
class Previous:
    """The run a continued run starts from."""

    root: Path
    config: RunConfig
    labels: LabelMap
    summary: dict[str, Any]

    def model(self) -> nn.Module:
        """Its trained model as inference loads it (adapters merged), in eval mode."""
        from tunelab.inference.backends import LoadContext, model_loader, run_method
        from tunelab.runs import RunFolder

        ctx = LoadContext(
            run=RunFolder(self.root), config=self.config, labels=self.labels, summary=self.summary
        )
        return run_method(ctx).load_for_inference(self.root / "weights", model_loader(ctx)).eval()


def open_previous(cfg: RunConfig, splits: Splits, *, stores_base: bool) -> Previous:
    """Check that ``cfg`` can continue ``cfg.continual.from_run`` with ``splits``; one-line errors.

    Args:
        cfg: the continued run's config.
        splits: the continued run's data, as its task read it (with its label map).
        stores_base: whether the continued run's method saves the whole model.
    """
    assert cfg.continual.from_run is not None
    from tunelab.tasks import get_task
    from tunelab.tasks.base import built_in, plugin_name

    where, labels = cfg.continual.from_run, splits.labels
    task = get_task(cfg.data.task)
    if not task.labels_per_row:
        # Token classification keeps sentences of tagged words, not rows with labels: its label ids
        # follow the tags seen, and rehearsal would need whole sentences. Not supported (README).
        # The task says so (Task.labels_per_row), not its datasets' class: a plug-in with rows of
        # its own class was refused. Only a plug-in's author knows what its class attribute means.
        why = "" if built_in(task) else f" ({plugin_name(task)}.labels_per_row is False)"
        raise ConfigError(
            f"--from {where}: data.task={labels.task} is not supported; continual learning works for "
            f"classification (single-label, multi-label, text pairs){why}"
        )
    run, summary = _find(where)
    config = RunConfig.from_dict(_read_run_file(run.config_json))
    previous = Previous(
        root=run.root, config=config, labels=read_run_labels(run, summary, config), summary=summary
    )
    if previous.labels.task != labels.task:
        raise ConfigError(
            f"--from {where}: that run is task {previous.labels.task}, this one {labels.task}; "
            "continue with the same data.task"
        )
    same_base = cfg.model.name in (previous.config.model.name, _base_found(previous.config, summary))
    if not same_base:
        raise ConfigError(
            f"--from {where}: that run was trained from model {previous.config.model.name}, this one asks "
            f"for {cfg.model.name}; continue with the same model.name (or train a fresh run)"
        )
    if not stores_base:
        raise ConfigError(
            f"--from {where}: method={cfg.method.name} saves an adapter over the base model, but a continued "
            "run starts from the previous run's weights; use method=full"
        )
    from tunelab.methods import get_method

    before = get_method(previous.config.method.name)
    refusal = _merge_refusal(str(where), before.name)
    if refusal is not None:
        raise refusal
    if bool(previous.config.data.text_pair_column) != bool(cfg.data.text_pair_column):
        # train failed later on rehearsal.jsonl with "use the same task": both runs were single_label
        kind = "text pairs" if previous.config.data.text_pair_column else "single texts"
        raise ConfigError(
            f"--from {where}: that run classifies {kind}, this one "
            f"{'does not set' if previous.config.data.text_pair_column else 'sets'} data.text_pair_column; "
            "continue with the same kind of input (data.text_pair_column as that run had it)"
        )
    if not before.stores_base:
        # an adapter RUN is merged onto its base: a base whose weights changed passed validate and
        # failed in train only when the model was loaded
        from tunelab.inference.backends import LoadContext, base_folder
        from tunelab.models.fingerprint import check_base

        # where its base is now, as loading the run finds it (a relative local base: the folder
        # recorded at training, which --from from another directory did not find)
        ctx = LoadContext(run=None, config=previous.config, labels=None, summary=summary)
        check_base(run.root, summary, previous.config.model.name, base_folder(ctx))
    old = previous.labels.names
    if labels.names[: len(old)] != old:
        dropped = [n for n in old if n not in labels]
        what = f"drops label(s) {', '.join(dropped[:5])}" if dropped else "reorders the labels"
        raise ConfigError(
            f"--from {where}: data.labels {what} of the previous run; a continued run keeps every "
            f"label and its id (leave data.labels unset), a smaller label set needs a fresh run"
            if dropped or cfg.data.labels
            else f"--from {where}: data.task={labels.task} does not keep a given label order "
            "(data.labels), so label ids would change: continual learning supports classification tasks"
        )
    return previous


def stratified_sample(dataset: Dataset, *, per_class: int | None, total: int | None, seed: int) -> list[int]:
    """Positions of a seeded sample with up to ``per_class`` rows of each label (in file order).

    ``per_class`` None (``continual.rehearsal: all``) keeps every row.

    With ``total``, that many rows spread evenly over the labels instead (the first labels of a
    seeded order get one more when it does not divide; a label with fewer rows than its share keeps
    them all, and the rest of its share is not used, which the continued run notes). A multi-label
    row counts for every label it holds, and the rarest labels are filled first (rows without a
    label form one group of their own).
    """
    labels = dataset.labels or []
    rng = random.Random(seed)
    if any(isinstance(label, list) for label in labels):
        return _multi_label_sample(labels, per_class=per_class, total=total, rng=rng)
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        groups[label].append(i)
    keys = sorted(groups, key=_order)
    quota = _quotas(keys, groups, per_class=per_class, total=total, rng=rng)
    chosen: list[int] = []
    for key in keys:
        rows = groups[key]
        chosen.extend(rng.sample(rows, min(quota[key], len(rows))))
    return sorted(chosen)


def _order(key: Any) -> tuple[bool, Any]:
    return (key is None, key if key is not None else 0)


def _quotas(
    keys: list[Any],
    groups: dict[Any, list[int]],
    *,
    per_class: int | None,
    total: int | None,
    rng: random.Random,
) -> dict[Any, int]:
    quota = {k: len(groups[k]) if per_class is None else per_class for k in keys}
    if total is not None and keys:
        base, extra = divmod(total, len(keys))
        bonus = set(rng.sample(keys, extra))
        quota = {k: base + (k in bonus) for k in keys}
        # A label with fewer rows than its share leaves the rest of it unused (24/4/4 rows with
        # total=24 store 16): handing it to the others would change the sample of runs begun before,
        # whose resume checks it. short_sample_note says so in the continued run instead.
    return quota


def _multi_label_sample(
    labels: list[Any], *, per_class: int | None, total: int | None, rng: random.Random
) -> list[int]:
    """Each label's quota counted over every row holding it, rarest label first.

    Sampling each row under its first label only left a label that always comes with a more
    frequent one (lower id) without a quota of its own: 8 of its 40 rows kept where 50 were asked,
    and the continued run forgot it. Rows chosen for one label count for every label they hold.
    """
    holding: dict[Any, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        for key in label or [None]:
            holding[key].append(i)
    keys = sorted(holding, key=_order)
    quota = _quotas(keys, holding, per_class=per_class, total=total, rng=rng)
    counts: dict[Any, int] = defaultdict(int)
    chosen: set[int] = set()
    for key in sorted(keys, key=lambda k: (len(holding[k]), *_order(k))):
        rows = [i for i in holding[key] if i not in chosen]
        rng.shuffle(rows)
        for i in rows:
            if counts[key] >= quota[key]:
                break
            chosen.add(i)
            for other in labels[i] or [None]:
                counts[other] += 1
    return sorted(chosen)


def write_rehearsal(folder: Path, dataset: Any, labels: LabelMap, cc: ContinualConfig, *, seed: int) -> int:
    """Store the stratified sample of ``dataset`` a later ``--from`` replays; returns its row count.

    Rows are JSON lines with the label *names* (``text``, ``label``, and ``text_pair`` for pair
    tasks), so a continued run maps them onto its own, grown, label map. Written for a task whose
    rows have a label each (``Task.labels_per_row``), whatever its dataset's class; none for others
    (token classification: see ``open_previous``).
    """
    from tunelab.tasks import get_task

    if not get_task(labels.task).labels_per_row or dataset.labels is None:
        return 0
    picked = stratified_sample(dataset, per_class=cc.rehearsal_per_label, total=cc.rehearsal_total, seed=seed)
    lines = []
    for i in picked:
        label = dataset.labels[i]  # type: ignore[index]
        row: dict[str, Any] = {"text": dataset.texts[i]}
        if dataset.text_pairs is not None:
            row["text_pair"] = dataset.text_pairs[i]
        row["label"] = [labels.names[j] for j in label] if isinstance(label, list) else labels.names[label]
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(folder / REHEARSAL_FILE, "".join(line + "\n" for line in lines))
    return len(picked)


_REHEARSAL_FIX = (
    "each line is a JSON object with the run's text and label; restore the file, or continue with "
    "continual.rehearsal=0"
)


def read_rehearsal(previous: Previous, labels: LabelMap, cc: ContinualConfig, *, seed: int) -> Dataset:
    """The previous run's stored sample, up to ``cc.rehearsal`` rows a label (or ``rehearsal_total``).

    Raises:
        RunError: the run has no stored sample (trained before tunelab kept one, the file removed, or
            a member's copy inside an ensemble) and rehearsal is on.
    """
    path = previous.root / REHEARSAL_FILE
    empty = Dataset(texts=[], text_pairs=None, labels=[], source=str(path))
    if cc.rehearsal == 0 and not cc.rehearsal_total:
        return empty
    missing = _missing_rehearsal(previous.root, cc)
    if missing is not None:
        raise missing
    from tunelab.tasks import get_task

    many = get_task(labels.task).output == "labels"  # a list of names a row, else one name
    pairs_wanted = bool(previous.config.data.text_pair_column)
    rows, ids = [], []
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not readable ({type(exc).__name__}); {_REHEARSAL_FIX}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label = row["text"], row["label"]
            # has_visible_text, not strip(): a zero-width-only text is empty, as the data readers read it
            if not isinstance(text, str) or not has_visible_text(text):
                raise ValueError("no text")
            # A label of the wrong kind passed `validate --from` and failed mid-training with a
            # TypeError, leaving a .partial folder; a missing second text dropped every pair.
            if many and not (isinstance(label, list) and all(isinstance(n, str) for n in label)):
                raise ValueError(f"label {label!r} is not a list of label names (a multi-label run)")
            if not many and not isinstance(label, str):
                raise ValueError(f"label {label!r} is not one label name")
            pair = row.get("text_pair")
            if pairs_wanted and (not isinstance(pair, str) or not has_visible_text(pair)):
                raise ValueError("no text_pair (the run reads text pairs)")
            ids.append([labels.id_of(n) for n in label] if isinstance(label, list) else labels.id_of(label))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, DataError) as exc:
            why = f"no {exc}" if isinstance(exc, KeyError) else first_line(exc)
            raise RunError(f"{path}: line {number}: {why}; {_REHEARSAL_FIX}") from None
        rows.append(row)
    pairs = [r["text_pair"] for r in rows] if pairs_wanted else None
    stored = Dataset(texts=[r["text"] for r in rows], text_pairs=pairs, labels=ids, source=str(path))
    keep = stratified_sample(stored, per_class=cc.rehearsal_per_label, total=cc.rehearsal_total, seed=seed)
    return stored.take(keep)


_DEFAULT_REHEARSAL = ContinualConfig.__dataclass_fields__["rehearsal"].default


def short_sample_note(
    rehearsal: Dataset,
    cc: ContinualConfig,
    stored: ContinualConfig | None = None,
    summary: dict[str, Any] | None = None,
) -> str | None:
    """A note when the previous run stored fewer rows a label than ``continual.rehearsal`` asks (or
    fewer in all than ``continual.rehearsal_total``), or when ``continual.rehearsal_total``
    overrides a ``continual.rehearsal`` that was set.

    A continued run replays up to ``continual.rehearsal`` stored rows a label (the previous run's
    own setting unless overridden); where the previous run stored fewer of every label (it asked
    for fewer, or its labels had fewer training rows) it replays what is there and says so instead
    of quietly replaying less, or nothing. ``rehearsal_total`` (even 0) asks for a total instead,
    noted the same way when the previous run stored fewer rows in all.
    ``stored``: the previous run's own setting; ``all`` asked of a run that stored a sample says
    how many rows a label it holds (it replayed them as if they were every training row), where
    the sample left rows out: ``summary`` (its run.json) counts the rows it sampled from, else a
    label at the sample's cap says so (a run of 8 rows a label stored all of them under the default
    50, and was said to have stored a sample).
    """
    if cc.rehearsal_total is not None and cc.rehearsal != _DEFAULT_REHEARSAL:
        # Both set (in a config, or both given with --from): the total wins, and a run that asked
        # for N rows a label (or all) replayed and stored another number with no word.
        return (
            f"rehearsal: continual.rehearsal_total={cc.rehearsal_total} takes precedence over "
            f"continual.rehearsal={cc.rehearsal}: {cc.rehearsal_total} rows in all are replayed and "
            "stored, not a number a label; set continual.rehearsal_total=null for rows a label"
        )
    asks_all = cc.rehearsal_total is None and cc.rehearsal_per_label is None
    sampled = stored is not None and (stored.rehearsal_per_label, stored.rehearsal_total) != (None, None)
    if asks_all and sampled and stored is not None and _left_rows_out(rehearsal, stored, summary):
        most = max(_rows_per_label(rehearsal.labels).values(), default=0)
        kept = (
            f"continual.rehearsal_total={stored.rehearsal_total}"
            if stored.rehearsal_total is not None
            else f"continual.rehearsal={stored.rehearsal}"
        )
        return (
            f"rehearsal: continual.rehearsal=all replays every row the previous run stored, and it "
            f"stored a sample ({kept}: at most {most} rows a label), not every training row; "
            "train it with continual.rehearsal=all to replay them all"
        )
    if cc.rehearsal_total is not None:
        if len(rehearsal.texts) >= cc.rehearsal_total:
            return None
        return (
            f"rehearsal: the previous run stored {len(rehearsal.texts)} rows, fewer than "
            f"continual.rehearsal_total={cc.rehearsal_total} asks for; what it stored is replayed"
        )
    if cc.rehearsal_per_label is None or not cc.rehearsal:
        return None
    if not rehearsal.labels:
        return (
            f"rehearsal: the previous run stored no rows (continual.rehearsal={cc.rehearsal} asks for "
            "some): none are replayed, as in naive continued training"
        )
    most = max(_rows_per_label(rehearsal.labels).values())
    if most >= cc.rehearsal:
        return None
    return (
        f"rehearsal: the previous run stored at most {most} rows a label, fewer than "
        f"continual.rehearsal={cc.rehearsal} asks for; what it stored is replayed"
    )


def _left_rows_out(rehearsal: Dataset, stored: ContinualConfig, summary: dict[str, Any] | None) -> bool:
    """Whether the previous run's stored sample (``rehearsal``, all of it; drawn as ``stored`` says)
    left out some of the rows it was drawn from.

    Those rows are run.json's ``rows.train`` less the rows it made (``augmentation.kept``) and
    pseudo-labelled (``self_training.added``): the sample is drawn before either joins. Where
    run.json does not tell (a damaged or hand-written one), a label with as many rows as a
    per-label sample keeps may have had more; a total cannot tell, and is said to have left some.
    """
    sampled_from = _rows_sampled_from(summary)
    if sampled_from is not None:
        return len(rehearsal.texts) < sampled_from
    if stored.rehearsal_total is not None:
        return True
    cap = stored.rehearsal_per_label
    return cap is not None and max(_rows_per_label(rehearsal.labels or []).values(), default=0) >= cap


def _rows_sampled_from(summary: dict[str, Any] | None) -> int | None:
    """The training rows a run drew its stored sample from, from its run.json; None where that
    does not tell."""
    if not isinstance(summary, dict):
        return None
    rows = summary.get("rows")
    train = rows.get("train") if isinstance(rows, dict) else None
    if not _count(train):
        return None
    total = train
    for part, key in (("augmentation", "kept"), ("self_training", "added")):
        info = summary.get(part)
        if info is None:
            continue
        value = info.get(key, 0) if isinstance(info, dict) else None
        if not _count(value):
            return None
        total -= value
    return total if total >= 0 else None


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rows_per_label(labels: list[Any]) -> Counter[Any]:
    """Rows holding each label: a multi-label row counts for every label it holds (as the sample
    was drawn), not its first only."""
    counts: Counter[Any] = Counter()
    for label in labels:
        counts.update((label or [None]) if isinstance(label, list) else [label])
    return counts


def refuse_unprobed_old_labels(rows: list[Any], labels: LabelMap, cc: ContinualConfig, num_old: int) -> None:
    """``continual.head: probe`` needs a training row of every old label; one-line error otherwise.

    ``rows``: the training rows' label ids, rehearsal rows included. Single-label only: there a
    label without a row gets the probe's absent-label bias and would never be predicted again
    (a multi-label probe skips itself when a label is never present, and the copied head stays).

    Raises:
        ConfigError: naming up to three such labels and the setting that would give them rows.
    """
    if any(isinstance(label, list) for label in rows):
        return
    present = set(rows)
    missing = [name for i, name in enumerate(labels.names[:num_old]) if i not in present]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        more = (
            f"continual.rehearsal_total of at least {num_old} (or null)"
            if cc.rehearsal_total is not None
            else "more rehearsal rows (continual.rehearsal)"
        )
        raise ConfigError(
            f"continual.head=probe: old label(s) {shown} have no row among the new rows and the "
            f"replayed sample, so the refitted head would never predict them; use continual.head=copy, "
            f"or {more}"
        )


def check_probe_rows(cfg: RunConfig, previous: Previous, splits: Splits, rehearsal: Dataset) -> None:
    """``refuse_unprobed_old_labels`` before training (``tunelab validate`` and ``train``'s checks);
    ``rehearsal``: ``read_rehearsal``'s sample."""
    if cfg.continual.head != "probe":
        return
    rehearsal, _ = without_held_out(rehearsal, splits)
    rehearsal, _ = without_relabelled(rehearsal, splits.train)
    rows = [*(splits.train.labels or []), *(rehearsal.labels or [])]
    refuse_unprobed_old_labels(rows, splits.labels, cfg.continual, len(previous.labels))


def without_held_out(rehearsal: Dataset, splits: Splits) -> tuple[Dataset, int]:
    """``rehearsal`` without the rows that equal a dev or test row of the new data, and how many.

    The new data may repeat old rows (a user appends new rows to the file the first run read):
    a stored row carved into the new dev split would otherwise be trained on and inflate the dev
    score the checkpoint is chosen by.
    """
    from tunelab.data.held_out import rows_not_held_out

    keep = rows_not_held_out(rehearsal, splits)
    if len(keep) == len(rehearsal.texts):
        return rehearsal, 0
    return rehearsal.take(keep), len(rehearsal.texts) - len(keep)


def without_relabelled(rehearsal: Dataset, train: Dataset) -> tuple[Dataset, int]:
    """``rehearsal`` without the rows whose text (and pair) is a new training row's with another
    label, and how many.

    A user who relabels a text gives it again in the new rows: replayed too, the run trained on
    both labels of one text and stored both in its own sample. The new label wins. A stored row
    repeating a new row with its label stays (new data that repeats the old file replays as
    before). Compared as ``tunelab.data.held_out`` compares (case and spacing ignored).
    """
    from tunelab.data.held_out import normalised

    new: dict[tuple[str, str | None], set[Any]] = defaultdict(set)
    pairs = train.text_pairs or [None] * len(train.texts)
    for text, pair, label in zip(train.texts, pairs, train.labels or [], strict=True):
        new[normalised(text, pair)].add(_label_key(label))
    stored = rehearsal.text_pairs or [None] * len(rehearsal.texts)
    keep = []
    for i, (text, pair, label) in enumerate(
        zip(rehearsal.texts, stored, rehearsal.labels or [], strict=True)
    ):
        labels = new.get(normalised(text, pair))
        if labels is None or _label_key(label) in labels:
            keep.append(i)
    if len(keep) == len(rehearsal.texts):
        return rehearsal, 0
    return rehearsal.take(keep), len(rehearsal.texts) - len(keep)


def _label_key(label: Any) -> Any:
    """A row's label id, or its multi-label ids as a sorted tuple (hashable, order ignored)."""
    return tuple(sorted(label)) if isinstance(label, list) else label


def with_rehearsal(splits: Splits, rehearsal: Dataset, *, dropped: int = 0, relabelled: int = 0) -> Splits:
    """``splits`` with the rehearsal rows appended to train (dev and test stay as they were read).

    ``dropped``: rehearsal rows left out for equalling a dev or test row (``without_held_out``);
    ``relabelled``: those left out for a new training row giving their text another label
    (``without_relabelled``).
    """
    if dropped:
        note = (
            f"rehearsal: {dropped} rows of the previous run's sample left out: they are dev or test rows now"
        )
        splits = replace(splits, notes=[*splits.notes, note])
    if relabelled:
        note = (
            f"rehearsal: {relabelled} rows of the previous run's sample left out: new training rows give "
            "their texts another label, which wins"
        )
        splits = replace(splits, notes=[*splits.notes, note])
    if not rehearsal.texts:
        return splits
    train = splits.train
    if (train.text_pairs is None) != (rehearsal.text_pairs is None):
        raise ConfigError(
            f"{rehearsal.source}: text pairs in one of it and the new data only; use the same task"
        )
    from tunelab.tasks import get_task
    from tunelab.tasks.base import check_extendable

    # The dataset's own ``extended`` (the built-in Dataset's appends texts, pairs and labels): a
    # plug-in task's rows stay its own class, which its hooks (encode) are handed.
    check_extendable(get_task(splits.labels.task), train, "train --from (its rehearsal rows)")
    merged = train.extended(rehearsal)
    note = f"rehearsal: {len(rehearsal)} rows of the previous run's sample joined the training rows"
    return replace(splits, train=merged, notes=[*splits.notes, note])


@torch.no_grad()
def grow_into(model: nn.Module, previous: nn.Module) -> None:
    """Copy ``previous``'s weights into ``model``, whose head has as many or more labels.

    ``model`` is the base model with a fresh head for the grown label list (the task built it);
    every weight is replaced by the previous model's, except the new head rows, which keep their
    fresh initialisation. A head tensor (L, ...) of the previous model fills rows 0..L-1.
    """
    old = previous.state_dict()
    new = model.state_dict()
    if set(old) != set(new):
        missing = sorted(set(old) ^ set(new))[:3]
        raise RunError(
            f"--from: the previous run's model does not fit this one (weights {', '.join(missing)})"
        )
    for key, value in old.items():
        target = new[key]
        if target.shape == value.shape:
            target.copy_(value)
        elif value.dim() >= 1 and value.shape[1:] == target.shape[1:] and value.shape[0] <= target.shape[0]:
            target[: value.shape[0]].copy_(value)  # the old labels' rows; the rest are new labels
        else:
            raise RunError(
                f"--from: weight {key} is {tuple(value.shape)} in the previous run and "
                f"{tuple(target.shape)} here"
            )
