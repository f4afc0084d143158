"""Run configuration: typed dataclasses that map one-to-one onto the YAML run files.

Each section validates itself in ``__post_init__`` and reports every problem it finds, naming the
field and the bad value. ``RunConfig.from_yaml(path, overrides)`` applies ``key=value`` overrides
from the command line (``train.epochs=3``, ``method=lora``, ``method.r=16``) before validating, so
``tunelab validate`` can show all problems at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import os
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from tunelab.errors import ConfigError
from tunelab.yaml_names import YAML11_BOOLS, DuplicateKeyError, StrictLoader

logger = logging.getLogger(__name__)

# conll: whitespace-separated token columns, blank lines between sentences (token classification).
# excel: an .xlsx workbook, one sheet (data.sheet, default the first) read as a table.
FORMATS = ("auto", "csv", "tsv", "jsonl", "parquet", "excel", "conll")
EMPTY_TEXT_POLICIES = ("drop", "error")
ADVERSARIAL = (None, "fgm", "pgd")
AUGMENT_METHODS = ("synonym", "insert", "swap", "delete")


def _check(problems: list[str], ok: bool, message: str) -> None:
    if not ok:
        problems.append(message)


def _raise_if(problems: list[str], section: str) -> None:
    """Raise one error naming every bad field as ``section.field``."""
    if problems:
        raise ConfigError("; ".join(f"{section}.{p}" for p in problems))


def _typed(section: Any, name: str) -> list[str]:
    """Give ``section``'s fields the types ``from_dict`` gives them (``coerce_types``), in place.

    A section built in Python skipped that step: ``TrainConfig(epochs="2")`` failed its range check
    as "'<' not supported between instances of 'int' and 'str'", naming no field, and
    ``TrainConfig(batch_size=8.0)`` passed, to fail mid-run in the loop (leaving a .partial folder).
    Now ``"2"``, ``"1e-3"`` and ``8.0`` are converted as a run file's values are, and a value that
    cannot be is reported naming its field, as from_dict reports it.

    Returns:
        The problems without the ``name.`` prefix (``_raise_if`` adds it). Each field with one is
        set back to its default, so that the checks that follow compare well-typed values and
        report every problem at once, as from_dict does for the fields it refused.
    """
    values = {f.name: getattr(section, f.name) for f in fields(section)}
    coerced, problems = coerce_types(type(section), values, name)
    for f in fields(section):
        if f.name not in problems:
            value = coerced[f.name]
        else:
            value = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        setattr(section, f.name, value)
    return [problem.removeprefix(f"{name}.") for problem in problems.values()]


def _check_task(problems: list[str], name: str) -> None:
    """``data.task`` names a registered task; else the registry's message lists the known ones."""
    from tunelab.tasks import get_task  # lazy: the tasks import this module

    try:
        get_task(name)
    except ConfigError:
        from tunelab.tasks import available_tasks

        problems.append(f"task={name!r} is not known (use one of {', '.join(available_tasks())})")


def column_clashes(data: DataConfig, *, labels: bool, text_column: str | None = None) -> list[str]:
    """``data``'s settings that name one column for two roles, one problem each (without ``data.``).

    A second text read from the text column trained and predicted on (t, t); a label column that
    is the text or pair column fed the model the gold label, which it learned to read back (100%
    on every split, nothing learned). ``labels``: the label column is read (training, evaluation;
    not prediction, where a file's text column may be named as the run's label column, or a task
    that reads no label column, NER). ``text_column``: the text column read instead of
    ``data.text_column``.
    """
    text = data.text_column if text_column is None else text_column
    pair, label = data.text_pair_column, data.label_column
    problems = []
    if pair is not None and pair == text:
        problems.append(
            f"text_column={text!r} and text_pair_column={pair!r} are the same column: each text would be "
            "paired with itself (set text_pair_column to the second texts' column, or null for single texts)"
        )
    gold = "the model would read the gold label as its input"
    if labels and label == text:
        problems.append(
            f"text_column={text!r} and label_column={label!r} are the same column: {gold} "
            "(set text_column to the texts' column, label_column to the labels')"
        )
    if labels and pair is not None and label == pair:
        problems.append(
            f"text_pair_column={pair!r} and label_column={label!r} are the same column: {gold} "
            "(set text_pair_column to the second texts' column, label_column to the labels')"
        )
    return problems


def _home(path: Any) -> Any:
    """A path as given with a leading ``~`` (``~/data/train.csv``, ``~user/runs``) expanded, as a shell
    would; anything else (no ``~``, not text, a home that cannot be found) unchanged."""
    if isinstance(path, str | Path) and str(path).startswith("~"):
        expanded = os.path.expanduser(path)
        return expanded if isinstance(path, str) else Path(expanded)
    return path


def _text_path(path: Any) -> Any:
    """A path given as a ``Path`` (or any ``os.PathLike``) as text: the readers join it with text
    (``data.train + " (dev split)"`` failed as a TypeError) and config.json could not hold it
    ("Object of type PosixPath is not JSON serializable", after the run folder was made)."""
    return os.fspath(path) if isinstance(path, os.PathLike) else path


def _finite_positive(value: float) -> bool:
    """A positive number a float holds: inf (a NaN model) and an int past a float's range
    (10**400, where math.isfinite raises OverflowError) are not."""
    try:
        return math.isfinite(float(value)) and value > 0
    except (OverflowError, TypeError, ValueError):
        return False


@dataclass
class DataConfig:
    """Where the labelled data is and how to read it.

    Either give ``dev``/``test`` files, or let tunelab carve a stratified ``dev_size`` (and
    ``test_size``) fraction out of ``train`` with ``split_seed``.
    """

    train: str | None = None
    dev: str | None = None
    test: str | None = None
    format: str = "auto"
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    separator: str | None = None
    encoding: str = "utf-8"
    header: bool = True
    column_names: list[str] | None = None
    # Excel workbooks: the sheet to read by name (None: the first sheet).
    sheet: str | None = None
    task: str = "single_label"
    label_delimiter: str = "|"
    dev_size: float = 0.1
    test_size: float = 0.0
    split_seed: int = 42
    empty_text: str = "drop"
    # Token classification (CoNLL column files): which column holds the tags (-1: the last).
    tag_column: int = -1
    # ... and which holds the words (0: the first; -1: the last). GermEval-2014 and CoNLL-U-derived
    # files number the tokens in column 0 (`1<TAB>Schartau<TAB>B-PER`): there it is 1.
    token_column: int = 0
    # Labels that keep ids 0..n-1 in this order; training labels not among them are appended,
    # sorted (null: all training labels, sorted). `tunelab train --from` sets it to the previous
    # run's labels so that their ids stay stable (classification tasks; see tunelab.train.continual).
    labels: list[str] | None = None
    # Few-shot: train on at most this many rows per label, a seeded stratified sample of the
    # training rows left after dev/test were carved (tunelab.data.shots); null: all rows.
    shots: int | None = None
    shots_seed: int | None = None  # null: split_seed

    def __post_init__(self) -> None:
        p = _typed(self, "data")
        # `data.train: ~/data/train.csv` was looked for in a folder named "~" in the current one.
        self.train, self.dev, self.test = (_text_path(_home(f)) for f in (self.train, self.dev, self.test))
        _check(p, self.format in FORMATS, f"format={self.format!r} (use one of {', '.join(FORMATS)})")
        _check_task(p, self.task)
        _check(
            p,
            self.empty_text in EMPTY_TEXT_POLICIES,
            f"empty_text={self.empty_text!r} (use 'drop' or 'error')",
        )
        _check(p, 0.0 <= self.dev_size < 1.0, f"dev_size={self.dev_size} (use a fraction in [0, 1))")
        _check(p, 0.0 <= self.test_size < 1.0, f"test_size={self.test_size} (use a fraction in [0, 1))")
        _check(
            p,
            self.dev_size + self.test_size < 1.0,
            "dev_size + test_size must leave rows for training",
        )
        _check(
            p,
            self.header or bool(self.column_names),
            "header=false needs column_names (e.g. [sentence, label])",
        )
        _check(p, bool(self.label_delimiter), "label_delimiter must not be empty")
        # The label column's clashes are the run's to check (RunConfig: its task may read none) and the
        # reader's (columns.extract): a file to predict may name its text column as the run's labels.
        p.extend(column_clashes(self, labels=False))
        # the same index only: 0 and -2 name one column of a two-column file, which the reader checks
        _check(
            p,
            self.token_column != self.tag_column,
            f"token_column={self.token_column} and tag_column={self.tag_column} are the same column "
            "(set token_column to the words' column, tag_column to the tags')",
        )
        _check(
            p,
            self.shots is None
            or (isinstance(self.shots, int) and not isinstance(self.shots, bool) and self.shots >= 1),
            f"shots={self.shots} (use a number of examples per label such as 8, or null for all rows)",
        )
        # scikit-learn's and numpy's seeds: -1 failed at the split as "cannot make a 10% dev split",
        # whose advice (give a dev file) did not fix it
        _check(
            p,
            0 <= self.split_seed < 2**32,
            f"split_seed={self.split_seed} (use a whole number from 0 to 4294967295)",
        )
        _check(
            p,
            self.shots_seed is None or 0 <= self.shots_seed < 2**32,
            f"shots_seed={self.shots_seed} (use a whole number from 0 to 4294967295, or null for split_seed)",
        )
        _raise_if(p, "data")


@dataclass
class ModelConfig:
    """Which pre-trained encoder to start from (see ``tunelab.models.resolve_model``)."""

    name: str = "minilm-l6"
    max_length: int = 128
    pooling: str = "auto"
    # Token classification: tokens shared by consecutive windows of a sentence longer than
    # max_length (context for the words near a cut); capped at half a window when encoding.
    stride: int = 32

    def __post_init__(self) -> None:
        p = _typed(self, "model")
        self.name = _text_path(self.name)  # a local model folder given as a Path: config.json keeps text
        _check(p, bool(self.name), "name must not be empty")
        _check(
            p, self.pooling in ("auto", "mean", "cls"), f"pooling={self.pooling!r} (use auto, mean or cls)"
        )
        _check(p, 8 <= self.max_length <= 8192, f"max_length={self.max_length} (use 8..8192)")
        _check(p, 0 <= self.stride <= 8192, f"stride={self.stride} (use 0 or more tokens, e.g. 32)")
        _raise_if(p, "model")


@dataclass
class MethodConfig:
    """The fine-tuning method by registered name, with method-specific options.

    ``options`` is validated by the method's own config dataclass (``tunelab.methods``), so a new
    method adds its options without touching this file.
    """

    name: str = "full"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"method: name={self.name!r} must be a method name such as 'full' or 'lora'")
        # `options: 5` failed in the method's check as "unexpected TypeError: 'int' object is not iterable"
        if not isinstance(self.options, dict):
            raise ConfigError(f"method.options={self.options!r} must be a mapping, e.g. {{r: 16}}")


@dataclass
class TrainConfig:
    """The optimisation recipe.

    ``learning_rate=None`` takes the method's default. The freshly initialised classification head
    learns at ``head_learning_rate`` (default: the larger of ``learning_rate`` and 2e-3): a new
    linear layer needs a far larger step than pre-trained weights, and it converges in a fraction
    of the epochs that way. ``head_init="probe"`` (the default) instead fits the head as a
    logistic regression on the frozen encoder's features before fine-tuning (LP-FT, see
    ``tunelab.train.head_init``); such a head keeps the body's learning rate.
    """

    epochs: float = 5.0
    batch_size: int = 32
    learning_rate: float | None = None
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0
    group_by_length: bool = True
    eval_steps: int | None = None
    # The dev metric that selects the checkpoint; "auto" is the task's own default (the first of
    # ``Task.metrics``: accuracy for classification, entity_f1 for NER), resolved by RunConfig.
    metric: str = "auto"
    patience: int | None = 3
    checkpoint_steps: int = 100
    class_weights: bool = False
    # Cross-entropy against (1 - e) x the label + e spread evenly over the labels, as Hugging Face
    # Trainer's label_smoothing_factor: a model that may not be certain overfits less.
    label_smoothing: float = 0.0
    head_init: str = "probe"
    seed: int = 42
    threads: int | None = None
    # auto: bf16 autocast when the CPU has avx512_bf16 or AMX, fp32 otherwise (tunelab.train.precision).
    precision: str = "auto"
    # Dropout masks drawn from 16 random bits per element instead of torch's per-element
    # bernoulli_ on CPU (tunelab.train.fast_dropout): same distribution, a cheaper draw.
    fast_dropout: bool = True
    # Adversarial training on the input embeddings (tunelab.train.adversarial): null (off), fgm or
    # pgd; epsilon is the perturbation's L2 norm per example, steps and alpha PGD's ascent steps.
    adversarial: str | None = None
    adversarial_epsilon: float = 1.0
    adversarial_steps: int = 3
    adversarial_alpha: float = 0.3

    def __post_init__(self) -> None:
        p = _typed(self, "train")
        _check(p, 0 < self.epochs < 1e6, f"epochs={self.epochs} (use a positive number, e.g. 3)")
        _check(p, self.batch_size >= 1, f"batch_size={self.batch_size} (use 1 or more)")
        # train refused these only deep inside (sklearn's random_state, torch.set_num_threads)
        _check(p, 0 <= self.seed < 2**32, f"seed={self.seed} (use a whole number from 0 to 4294967295)")
        _check(
            p, self.threads is None or self.threads >= 1, f"threads={self.threads} (use 1 or more, or null)"
        )
        _check(
            p,
            self.learning_rate is None or 0 < self.learning_rate < 1,
            f"learning_rate={self.learning_rate} (use a value in (0, 1), e.g. 5e-5)",
        )
        _check(
            p,
            self.head_learning_rate is None or 0 < self.head_learning_rate < 1,
            f"head_learning_rate={self.head_learning_rate} (use a value in (0, 1), e.g. 2e-3)",
        )
        # inf made every weight NaN, and the run still "finished"
        _check(
            p,
            self.weight_decay == 0 or _finite_positive(self.weight_decay),
            f"weight_decay={self.weight_decay} (use 0 or more, e.g. 0.01)",
        )
        # clip_grad_norm_ scales by max_norm / |g|: 0 zeroed every gradient (a model left at chance),
        # a negative norm flipped them, NaN made NaN weights
        _check(
            p,
            _finite_positive(self.max_grad_norm),
            f"max_grad_norm={self.max_grad_norm} (use a positive gradient norm, e.g. 1.0)",
        )
        _check(p, 0 <= self.warmup_ratio < 1, f"warmup_ratio={self.warmup_ratio} (use [0, 1))")
        _check(p, self.grad_accum_steps >= 1, f"grad_accum_steps={self.grad_accum_steps} (use 1 or more)")
        _check(
            p,
            self.eval_steps is None or self.eval_steps >= 1,
            f"eval_steps={self.eval_steps} (use a positive step count, or null for every epoch)",
        )
        _check(
            p,
            self.patience is None or self.patience >= 1,
            f"patience={self.patience} (use 1 or more, or null to disable early stopping)",
        )
        _check(
            p,
            0 <= self.label_smoothing < 1,
            f"label_smoothing={self.label_smoothing} (use [0, 1), e.g. 0.1; 0 is off)",
        )
        _check(p, self.checkpoint_steps >= 1, f"checkpoint_steps={self.checkpoint_steps} (use 1 or more)")
        _check(
            p,
            self.head_init in ("random", "probe"),
            f"head_init={self.head_init!r} (use random, or probe for a linear-probe warm start)",
        )
        # Which metrics exist depends on the task: RunConfig checks the name against it.
        _check(p, isinstance(self.metric, str) and bool(self.metric), "metric must not be empty")
        _check(
            p,
            self.precision in ("auto", "fp32", "bf16"),
            f"precision={self.precision!r} (use auto, fp32 or bf16)",
        )
        _check(
            p,
            self.adversarial in ADVERSARIAL,
            f"adversarial={self.adversarial!r} (use fgm, pgd, or null for none)",
        )
        _check(
            p,
            _finite_positive(self.adversarial_epsilon),  # inf trained a NaN model
            f"adversarial_epsilon={self.adversarial_epsilon} (use a positive norm, e.g. 1.0)",
        )
        _check(p, self.adversarial_steps >= 1, f"adversarial_steps={self.adversarial_steps} (use 1 or more)")
        _check(
            p,
            _finite_positive(self.adversarial_alpha),
            f"adversarial_alpha={self.adversarial_alpha} (use e.g. 0.3)",
        )
        _raise_if(p, "train")


@dataclass
class AugmentConfig:
    """Offline text augmentation of the training rows (EDA; see ``tunelab.data.augment``).

    Off while ``methods`` is empty. Only the training split is augmented, after dev and test were
    read or carved, so augmented rows never reach them.
    """

    # Any of synonym, insert (a synonym of a word, inserted), swap, delete; each new row uses one.
    methods: list[str] = field(default_factory=list)
    per_example: int = 4  # new rows per training row (EDA: 16 under 500 rows, 4 above 5,000)
    alpha: float = 0.1  # share of a row's words each operation changes (EDA's alpha)
    filter: bool = False  # keep a new row only if a probe on the original rows agrees with its label
    seed: int | None = None  # null: train.seed

    def __post_init__(self) -> None:
        p = _typed(self, "augment")
        bad = [m for m in self.methods if m not in AUGMENT_METHODS]
        _check(p, not bad, f"methods={bad!r} (use some of {', '.join(AUGMENT_METHODS)})")
        _check(
            p,
            isinstance(self.per_example, int)
            and not isinstance(self.per_example, bool)
            and self.per_example >= 1,
            f"per_example={self.per_example} (use a whole number, 1 or more)",
        )
        _check(p, 0 < self.alpha <= 1, f"alpha={self.alpha} (use a share in (0, 1], e.g. 0.1)")
        _check(
            p,
            self.seed is None or 0 <= self.seed < 2**32,  # the filter's probe refused it mid-run
            f"seed={self.seed} (use a whole number from 0 to 4294967295, or null for train.seed)",
        )
        _raise_if(p, "augment")


@dataclass
class SelfTrainingConfig:
    """Self-training on unlabelled texts: a probe labels them, the confident ones join training.

    Off while ``unlabeled`` is null. See ``tunelab.train.pseudo_rows`` for how rows are chosen.
    """

    # A file of texts without labels (its data.text_column; other columns are ignored); null: off.
    unlabeled: str | None = None
    # At most this many pseudo-labelled rows per label, the most confident first (chosen on
    # BANKING77's dev split with 8 rows per intent: 128 a label, about all of the 8,382 texts).
    per_label: int = 128
    # Labelling passes of the probe over the unlabelled texts; it is refitted on its own labels
    # between them (rounds - 1 refits: 1 is the plain probe), and the last pass's labels are the run's.
    rounds: int = 3
    # A pseudo-labelled row is kept only when the probe gives its label at least this probability.
    min_confidence: float = 0.0
    # true: each label's name (``card_arrival`` read as "card arrival") is one more labelled text
    # for the probe (not for the run): a name that says what the label means helps it at 8 rows a label.
    label_names: bool = False

    def __post_init__(self) -> None:
        p = _typed(self, "self_training")
        self.unlabeled = _text_path(_home(self.unlabeled))
        for name in ("per_label", "rounds"):
            value = getattr(self, name)
            _check(
                p,
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{name}={value} (use a whole number, 1 or more)",
            )
        _check(
            p,
            0 <= self.min_confidence < 1,
            f"min_confidence={self.min_confidence} (use a probability in [0, 1))",
        )
        _check(p, isinstance(self.label_names, bool), f"label_names={self.label_names!r} (use true or false)")
        _check(
            p,
            not (self.label_names is True and self.unlabeled is None),
            "label_names=true needs unlabeled texts (self_training.unlabeled=FILE): the names help the "
            "probe that labels them, and without them there is no probe",
        )
        _check(
            p,
            self.unlabeled is None or (isinstance(self.unlabeled, str) and self.unlabeled.strip() != ""),
            f"unlabeled={self.unlabeled!r} (name a file of texts, or null for off)",
        )
        _raise_if(p, "self_training")


@dataclass
class ContinualConfig:
    """Continual learning: continue a finished run with new rows and new labels (``train --from``).

    Every run stores a stratified sample of its training rows (``rehearsal.jsonl``) so that a later
    run can continue from it; see ``tunelab.train.continual``.
    """

    # The finished run to continue from (set by `tunelab train --from RUN`); null: a fresh run.
    from_run: str | None = None
    # Rows per label kept in the run folder, and replayed from the previous run's sample. 50: on
    # BANKING77's dev split (benchmarks/continual.py) 50 a label beat 20 by 2.2 points over the 77
    # intents and matched retraining on everything; 100 gained nothing more.
    # `all`: every training row (the recipe that met the forgetting target, README).
    rehearsal: int | str = 50
    # A total instead (spread evenly over the labels); null: `rehearsal` per label.
    rehearsal_total: int | None = None
    # Weight of the distillation penalty: the old labels' logits against the previous model's.
    distill: float = 0.0
    distill_temperature: float = 2.0
    # Weight of the EWC penalty (elastic weight consolidation, Fisher from the rehearsal rows).
    ewc: float = 0.0
    # How the grown head starts: copy (the old labels' rows from the previous run, the new rows
    # random, learning at the random head's rate) or probe (the whole head refitted as a logistic
    # regression on the previous model's frozen features of the training rows, rehearsal rows
    # included, then trained at the body's rate: LP-FT, so random rows send no large gradients into
    # the encoder at the start).
    head: str = "copy"

    def __post_init__(self) -> None:
        p = _typed(self, "continual")
        self.from_run = _text_path(self.from_run)
        if isinstance(self.rehearsal, float) and self.rehearsal.is_integer():
            self.rehearsal = int(self.rehearsal)
        if isinstance(self.rehearsal, str) and self.rehearsal.strip().lower() == "all":
            self.rehearsal = "all"
        elif isinstance(self.rehearsal, str) and (whole := _whole_number(self.rehearsal)) is not None:
            self.rehearsal = whole  # int | str: digits the loader kept as text (1_000, 0050)
        rows = self.rehearsal
        _check(
            p,
            rows == "all" or (isinstance(rows, int) and not isinstance(rows, bool) and rows >= 0),
            f"rehearsal={self.rehearsal!r} (use 0 or more rows per label, or all)",
        )
        _check(
            p,
            self.rehearsal_total is None or self.rehearsal_total >= 0,
            f"rehearsal_total={self.rehearsal_total} (use 0 or more rows, or null)",
        )
        # inf (or an int past a float's range) passed here and failed mid-training as "loss is nan
        # ... lower train.learning_rate" or an unexpected OverflowError, leaving a .partial folder.
        _check(
            p,
            self.distill == 0 or _finite_positive(self.distill),
            f"distill={self.distill} (use a finite weight >= 0, e.g. 1.0)",
        )
        _check(
            p,
            _finite_positive(self.distill_temperature),
            f"distill_temperature={self.distill_temperature} (use a finite positive number, e.g. 2)",
        )
        _check(
            p,
            self.ewc == 0 or _finite_positive(self.ewc),
            f"ewc={self.ewc} (use a finite weight >= 0, e.g. 100)",
        )
        _check(p, self.head in ("copy", "probe"), f"head={self.head!r} (use copy or probe)")
        # rehearsal_total, when given, takes precedence over rehearsal (0 asks for no rows too)
        asks_rows = self.rehearsal_total > 0 if self.rehearsal_total is not None else self.rehearsal != 0
        _check(
            p,
            not (self.head == "probe" and not asks_rows),
            "head=probe needs rehearsal rows: the probe is fitted on the training rows, and without the "
            "previous run's stored rows it sees no old label and would make them all unlikely (set "
            "rehearsal to 1 or more, or head=copy)",
        )
        _check(
            p,
            not (self.ewc > 0 and not asks_rows),
            f"ewc={self.ewc} needs rehearsal rows: its Fisher is estimated on the previous run's stored "
            "sample, which rehearsal=0 (or rehearsal_total=0) leaves out (set rehearsal to 1 or more, "
            "or ewc=0)",
        )
        # These act on a continued run only: a fresh run accepted them and did nothing.
        fresh_only = [
            f"{name}={value}"
            for name, value, on in (
                ("distill", self.distill, self.distill > 0),
                ("ewc", self.ewc, self.ewc > 0),
                ("head", self.head, self.head == "probe"),
            )
            if on
        ]
        _check(
            p,
            self.from_run is not None or not fresh_only,
            f"{', '.join(fresh_only)} act on a continued run only (tunelab train --from RUN); a fresh run "
            "has no previous model to keep: remove them",
        )
        _raise_if(p, "continual")

    @property
    def rehearsal_per_label(self) -> int | None:
        """Rows a label to store and replay; None: every row (``rehearsal: all``)."""
        return None if self.rehearsal == "all" else int(self.rehearsal)


@dataclass
class RunConfig:
    """A whole run: data, model, method and training recipe, plus where the run folder goes."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    continual: ContinualConfig = field(default_factory=ContinualConfig)
    self_training: SelfTrainingConfig = field(default_factory=SelfTrainingConfig)
    output_dir: str = "runs"
    name: str | None = None

    def __post_init__(self) -> None:
        from tunelab.tasks import get_task  # lazy: the tasks import this module

        # RunConfig(train={"epochs": 3}) failed as "'dict' object has no attribute 'metric'"
        wrong = [
            f"{f.name}={getattr(self, f.name)!r} (use a {cls.__name__}, e.g. {f.name}={cls.__name__}(...), "
            "or RunConfig.from_dict for mappings)"
            for f in fields(self)
            if (cls := _SECTION_TYPES.get(f.name)) is not None and not isinstance(getattr(self, f.name), cls)
        ]
        if wrong:
            raise ConfigError("; ".join(wrong))
        # Here, not only in from_dict: RunConfig(name="a/b") built in Python trained into runs/a/b,
        # and output_dir=Path(...) failed writing config.json after the run folder was made.
        name = self.name
        if isinstance(name, int | float) and not isinstance(name, bool):
            name = as_written(name)
        problems = _place_problems(self.output_dir, name)
        if problems:
            raise ConfigError("; ".join(problems))
        # `output_dir: ~/runs` made a folder named "~" in the current one; config.json keeps it expanded.
        self.output_dir = os.fspath(_home(self.output_dir))
        # `name=2024-06-01` or `name=7` parse as a date or an int; a run name is text.
        self.name = None if name is None else str(name)
        task = get_task(self.data.task)
        # Here, not in DataConfig, which also holds the columns of a file to predict (no labels read).
        reads_labels = ("data.label_column", self.data.label_column) in task.frame_columns(self.data)
        clashes = column_clashes(self.data, labels=reads_labels)
        if clashes:
            raise ConfigError("; ".join(f"data.{problem}" for problem in clashes))
        allowed = task.metrics
        if self.train.metric == "auto":
            # Resolved here, so the saved config.json names the metric the run really selected on; a
            # copy, so a TrainConfig given by the caller (and reused for another task) stays "auto".
            self.train = dataclasses.replace(self.train, metric=allowed[0])
            # Remembered (not a field: config.json names the metric), so that overrides applied to
            # this config (to_raw) resolve "auto" again: data.task=token_classification was refused
            # as "train.metric='accuracy'", a metric the user never chose.
            self.train._metric_from_auto = True  # type: ignore[attr-defined]
        if self.train.metric not in allowed:
            raise ConfigError(
                f"train.metric={self.train.metric!r} (use one of {', '.join(allowed)} "
                f"for task {self.data.task}, or auto for {allowed[0]})"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_raw(self) -> dict[str, Any]:
        """``to_dict()`` as a run file would give it, to apply overrides to and build again: a metric
        this config resolved from ``auto`` is ``auto`` again, so that another task (an override of
        ``data.task``) gets its own default rather than a refusal of the first task's."""
        raw = self.to_dict()
        if getattr(self.train, "_metric_from_auto", False):
            raw["train"]["metric"] = "auto"
        return raw

    def to_json(self) -> str:
        """``config.json``'s text; a value JSON cannot hold (a set among method options) is a
        ``ConfigError`` naming it, found before the run folder is made (see ``train``)."""
        try:
            return json.dumps(self.to_dict(), indent=2) + "\n"
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"config: {exc}; give plain values (text, numbers, true/false, lists, mappings)"
            ) from None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Build and validate a config; every problem is reported in one ``ConfigError``."""
        if not isinstance(raw, dict):
            raise ConfigError("config: the top level must be a mapping of sections (data, model, ...)")
        raw = dict(raw)
        method = raw.get("method")
        if isinstance(method, str):
            raw["method"] = {"name": method}
        elif isinstance(method, dict) and "options" not in method:
            # YAML shorthand: method: {name: lora, r: 16} -> options {r: 16}
            opts = {k: v for k, v in method.items() if k != "name"}
            raw["method"] = {"name": method.get("name", "full"), "options": opts}
        problems: list[str] = []
        sections: dict[str, Any] = {}
        known = {f.name: f for f in fields(cls)}
        for key in raw:
            if key not in known:
                problems.append(f"unknown section {key!r} (known: {', '.join(known)})")
        for name, section_cls in _SECTION_TYPES.items():
            # only an empty section (`train:`) means the defaults: `train: false` or `train: []` did too
            value = raw.get(name)
            if value is None:
                value = {}
            if not isinstance(value, dict):
                problems.append(f"{name}: must be a mapping, got {value!r}")
                continue
            allowed = {f.name for f in fields(section_cls)}
            # str(): a key YAML reads as a number (`train: {1: 3}`) failed the message as a TypeError
            unknown = sorted(str(k) for k in set(value) - allowed)
            if unknown:
                problems.append(
                    f"{name}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})"
                )
                continue
            value, type_problems = coerce_types(section_cls, value, name)
            if type_problems:
                # Still range-check the well-typed fields, so every problem is reported at once.
                problems.extend(type_problems.values())
                value = {k: v for k, v in value.items() if k not in type_problems}
            try:
                section = section_cls(**value)
                if not type_problems:
                    sections[name] = section
            except ConfigError as exc:
                problems.append(str(exc))
            except TypeError as exc:
                problems.append(f"{name}: {exc}")
        # Text as written: `name=1.10` (YAML's float 1.1) named run "1.1", `name=+7` run "7".
        name = raw.get("name")
        if isinstance(name, int | float):  # true/false too: name=true named the run "True"
            name = as_written(name)
        output_dir = raw.get("output_dir", "runs")
        if isinstance(output_dir, int | float) and not isinstance(output_dir, bool):
            output_dir = as_written(output_dir)  # output_dir=2.50 was refused as "use a folder"
        # reported with the sections' problems; __post_init__ checks the same, for a config built in Python
        problems.extend(_place_problems(output_dir, name))
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(
            **sections,
            output_dir=str(output_dir),
            # `name=2024-06-01` or `name=7` parse as a date or an int; a run name is text.
            name=None if name is None else str(name),
        )

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
        """Read a YAML run file (or start from defaults when ``path`` is None) and apply overrides."""
        raw: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            from tunelab.atomic import not_a_file

            if (why := not_a_file(p, "YAML run file")) is not None:  # a folder, a FIFO: not "not found"
                raise ConfigError(f"{p}: {why}")
            if not p.is_file():
                raise ConfigError(
                    f"{p}: config file not found; give the path of a YAML run file, or none and the "
                    "settings on the command line (data.train=train.csv ...)"
                )
            try:
                loaded = load_config_yaml(p.read_text(encoding="utf-8"))
            except UnicodeDecodeError as exc:
                line = p.read_bytes()[: exc.start].count(b"\n") + 1
                byte = f"0x{exc.object[exc.start]:02x}"
                raise ConfigError(
                    f"{p} line {line}: not valid UTF-8 (byte {byte}); save the run file as UTF-8"
                ) from None
            except DuplicateKeyError as exc:  # YAML itself keeps the last block, dropping the first
                raise ConfigError(f"{p} line {exc.line}: {exc.advice()}") from None
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f" line {mark.line + 1}" if mark else ""
                raise ConfigError(f"{p}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
            raw = loaded or {}
            if not isinstance(raw, dict):
                raise ConfigError(f"{p}: the top level must be a mapping of sections (data, model, ...)")
            # Relative data paths in a config file are relative to where the user runs tunelab,
            # as with every other CLI path; nothing to rewrite here.
        for item in override_items(overrides):
            apply_override(raw, item)
        return cls.from_dict(raw)

    def save(self, path: Path) -> None:
        """Write ``config.json`` whole or not at all (a resume reads it back)."""
        from tunelab.atomic import atomic_write_text

        atomic_write_text(path, self.to_json())


# RunConfig's sections, by field name: from_dict builds each from its mapping.
_SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "method": MethodConfig,
    "train": TrainConfig,
    "augment": AugmentConfig,
    "continual": ContinualConfig,
    "self_training": SelfTrainingConfig,
}


def _place_problems(output_dir: Any, name: Any) -> list[str]:
    """What is wrong with where a run goes (``output_dir``) and its folder's name (``name``), one
    problem each; RunConfig checks them however it is built (``from_dict``, or in Python)."""
    problems: list[str] = []
    # null or a list made a folder literally named "None" or "['a', 'b']"
    if not isinstance(output_dir, str | os.PathLike) or not os.fspath(output_dir).strip():
        problems.append(f"output_dir={output_dir!r} (use a folder, e.g. runs)")
    # a run name is one folder: "a/b" trained into runs/a/b, which `tunelab runs` never lists
    if isinstance(name, list | dict | tuple | set):  # name=[a, b] made a folder named "['a', 'b']"
        problems.append(f"name={name!r} (use one folder name)")
    elif name is not None and (
        not str(name).strip() or "/" in str(name) or "\\" in str(name) or str(name) in (".", "..")
    ):
        problems.append(f"name={name!r} (use one folder name, without / or \\)")
    elif name is not None:
        # lazy: the runs package imports this module
        from tunelab.runs.folder import MAX_NAME_BYTES, PARTIAL_SUFFIX

        size = len(str(name).encode("utf-8", errors="replace"))
        # it trained into runs/x.partial.partial, was renamed to runs/x.partial, and every later
        # command took it for an unfinished run (--resume renamed it to runs/x)
        if str(name).endswith(PARTIAL_SUFFIX):
            problems.append(
                f"name={name!r} (a name ending in {PARTIAL_SUFFIX} marks an unfinished run; choose another)"
            )
        # a folder name holds 255 bytes: runs/<name>.partial, or an export's runs/<name>-onnx-int8,
        # could not be made ("unexpected OSError: File name too long")
        elif size > MAX_NAME_BYTES:
            problems.append(
                f"name={str(name)[:40]!r}... ({size} bytes; use at most {MAX_NAME_BYTES}, so the folders "
                f"named after the run, such as <name>{PARTIAL_SUFFIX}, fit a file name)"
            )
    return problems


def override_items(items: Any, what: str = "overrides", example: str = "train.epochs=3") -> list[str]:
    """``items`` (``key=value`` texts, or None) as a list, checked: a bare text
    (``overrides="train.epochs=1"``) was read one character at a time ("override 't': use
    key=value"), and a mapping by its keys alone.

    Raises:
        ConfigError: ``items`` is not a list (or tuple) of texts, in one line with an example.
    """
    if items is None:
        return []
    if isinstance(items, str | bytes):
        raise ConfigError(f"{what}={items!r} is one text; give a list such as [{items!r}]")
    if not isinstance(items, list | tuple):
        raise ConfigError(f"{what}: {type(items).__name__} given; give a list such as [{example!r}]")
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"{what}: {item!r} is not a key=value text; give a list such as [{example!r}]")
    return list(items)


class _ConfigLoader(StrictLoader):
    """``StrictLoader`` (YAML 1.2's booleans and plain decimal numbers, no key given twice), whose
    numbers keep the text they were written as, for a text field (``as_written``). A boolean field
    still takes ``yes``/``no`` and a number field the digits kept as text (``coerce_types``:
    ``train.seed=0042`` is 42)."""


class _WrittenNumber:
    """A number as the run file or an override wrote it: ``name=1.10`` named run "1.1", ``name=+7``
    run "7" and ``data.train=2.50`` read the file 2.5. A text field keeps the text (``as_written``);
    a number field takes the plain number (``coerce_types``)."""

    text: str

    def __new__(cls, value: float, text: str) -> Any:
        number = super().__new__(cls, value)  # type: ignore[call-arg]  # int's or float's
        number.text = text
        return number

    def __getnewargs__(self) -> tuple[float, str]:  # copy.deepcopy (dataclasses.asdict) keeps the text
        return self.plain(), self.text

    def plain(self) -> float:
        """The number without its text, as its own type (int or float)."""
        return int(self) if isinstance(self, int) else float(self)  # type: ignore[arg-type]


class _IntText(_WrittenNumber, int):
    pass


class _FloatText(_WrittenNumber, float):
    pass


def _with_text(
    kind: type[_WrittenNumber], construct: str
) -> Callable[[yaml.SafeLoader, yaml.ScalarNode], Any]:
    """A YAML constructor making ``kind`` from the loader's own ``construct`` and the node's text."""
    return lambda loader, node: kind(getattr(loader, construct)(node), str(node.value))


_ConfigLoader.add_constructor("tag:yaml.org,2002:int", _with_text(_IntText, "construct_yaml_int"))
_ConfigLoader.add_constructor("tag:yaml.org,2002:float", _with_text(_FloatText, "construct_yaml_float"))
# A date or time stays the text written: no run field is a date, and name=2024-06-01T10:00:00Z named
# the run "2024-06-01 10:00:00+00:00" while output_dir=2024-06-01 was refused as datetime.date(...)
_ConfigLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)


def as_written(value: Any) -> str:
    """``value`` for a text field: a number as it was written (``1.10``, ``+7``), a boolean as YAML
    spells it (``name=true`` named the run "True", and ``data.labels=[false, true]`` listed labels
    "False" and "True" that no file's ``true``/``false`` column has), else ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.text if isinstance(value, _WrittenNumber) else str(value)


def load_config_yaml(text: str) -> Any:
    """``text`` as YAML with only ``true``/``false`` as booleans (``_ConfigLoader``)."""
    return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader subclass


def coerce_types(
    section_cls: type, values: dict[str, Any], section: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Check each value against its field's annotation, converting where the intent is clear.

    YAML 1.1 reads ``5e-5`` (no dot) as a string: it is converted to a float. Digits that the
    loader keeps as text (``0042``, ``1_000``; see ``_ConfigLoader``) are a whole number for an int
    field. A value that cannot be converted is reported naming the field.

    Returns:
        (converted values, {field: problem} for the values that did not fit)
    """
    out = dict(values)
    problems: dict[str, str] = {}
    annotations = {f.name: str(f.type) for f in fields(section_cls)}
    for key, value in values.items():
        ann = annotations[key].replace(" ", "")
        optional = "None" in ann
        kind = ann.replace("|None", "").replace("None|", "")
        if value is None:
            if not optional:
                problems[key] = f"{section}.{key} must not be null"
            continue
        if kind == "bool":
            if isinstance(value, str) and value.lower() in YAML11_BOOLS:  # yes/no/on/off, as before
                out[key] = YAML11_BOOLS[value.lower()]
            elif not isinstance(value, bool):
                problems[key] = f"{section}.{key}={value!r} (use true or false)"
        elif kind == "int":
            # numbers.Integral/Real: a numpy number from the Python API (np.int64(8), np.float32(8.0))
            # is a plain int, as 8.0 is; the loop's range() and torch refused a float batch size.
            if isinstance(value, bool):
                problems[key] = f"{section}.{key}={value!r} (use a whole number)"
            elif isinstance(value, numbers.Integral) or (
                isinstance(value, numbers.Real) and float(value).is_integer()  # not inf or NaN
            ):
                out[key] = int(value)
            elif isinstance(value, str) and _whole_number(value) is not None:
                out[key] = _whole_number(value)
            elif isinstance(value, str) and (whole := _whole_in_exponent_form(value)) is not None:
                out[key] = whole  # 1e3 (YAML 1.1 keeps it as text)
            elif not isinstance(value, int):
                problems[key] = f"{section}.{key}={value!r} (use a whole number)"
        elif kind == "float":
            if isinstance(value, str):
                try:
                    out[key] = float(value)
                except ValueError:
                    problems[key] = f"{section}.{key}={value!r} (use a number, e.g. 5e-5)"
            elif isinstance(value, bool) or not isinstance(value, numbers.Real):
                problems[key] = f"{section}.{key}={value!r} (use a number)"
            elif not isinstance(value, int | float):  # np.float32(5e-5): a plain float for config.json
                out[key] = float(value)
        elif kind == "str":
            if isinstance(value, list | dict):
                problems[key] = f"{section}.{key}={value!r} (use a single text value)"
            elif not isinstance(value, str):
                out[key] = as_written(value)  # name=1.10 stays "1.10", not "1.1"
        elif kind.startswith("list[str]"):
            # A list field given anything but a list (a string, a number, a mapping) is refused here
            # in one line: a number reached the readers and failed as "'int' object is not iterable".
            # A list-or-name method option (list[str]|str, target_modules) is its method's to check,
            # which names the modules it expects.
            if isinstance(value, list | tuple):  # a tuple from the Python API is a list too
                # A null item (`[sports, null]`, or a bare `-` line in a YAML list) became the text
                # 'None'; whether `null`, `~` or nothing was written is lost by now, so it is refused.
                nulls = [i for i, v in enumerate(value, 1) if v is None]
                # A list or mapping item became the text of its repr: [sports, [weather, x]] trained
                # a label "['weather', 'x']".
                nested = [i for i, v in enumerate(value, 1) if isinstance(v, list | tuple | dict)]
                if nulls:
                    problems[key] = (
                        f'{section}.{key}: item {nulls[0]} is null; remove it, or quote it ("null") '
                        "if it is a name"
                    )
                elif nested:
                    kind_of = "a list" if isinstance(value[nested[0] - 1], list | tuple) else "a mapping"
                    problems[key] = f"{section}.{key}: item {nested[0]} is {kind_of}; give each item as text"
                else:
                    out[key] = [as_written(v) for v in value]
            elif kind == "list[str]":
                problems[key] = f"{section}.{key}={value!r} (use a list, e.g. [a, b])"
        # A number field gets a plain int or float; options (a mapping) keep the text for their
        # method's own check, where a text option takes it as written.
        if isinstance(out[key], _WrittenNumber) and not kind.startswith("dict"):
            out[key] = out[key].plain()
    return out, problems


def _whole_in_exponent_form(text: str) -> int | None:
    """``1e3`` or ``2.5E2`` as the whole number it is (a float field took ``epochs=1e3`` while an int
    field refused ``batch_size=1e3``); None for anything else (``1e-3``, ``1.5``, ``inf``)."""
    if not re.fullmatch(r"\s*[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+\s*", text):
        return None
    number = float(text)
    return int(number) if math.isfinite(number) and number.is_integer() else None


def _whole_number(text: str) -> int | None:
    """``text`` as an int field reads it: decimal digits (``0042`` is 42, not octal 34; ``1_000``), or
    ``0x``/``0o``/``0b`` numbers as YAML 1.1 read them; None for anything else (``1:30``, ``1.5``)."""
    text = text.strip()
    try:
        if re.fullmatch(r"[-+]?[0-9](?:_?[0-9])*", text):
            return int(text, 10)
        if re.fullmatch(r"[-+]?0[xXoObB](?:_?[0-9a-fA-F])+", text):
            return int(text, 0)
    except ValueError:  # 0b2, 0o9
        return None
    return None


def _parse_value(text: str) -> Any:
    """Parse an override value with YAML rules, so ``3`` is an int and ``null`` is None.

    A value YAML reads as nothing or as an empty list though it was not written so (``|``, ``>``,
    ``#``, ``!`` and ``-`` are YAML syntax) stays the text given: ``data.separator=|`` was read as
    an empty string, and ``data.label_delimiter=#`` as null. So does a value with a YAML comment
    in it: ``data.train=data #1.csv`` read the file 'data', and ``name=exp #2`` trained run 'exp'.
    """
    try:
        value = load_config_yaml(text)
    except DuplicateKeyError:
        raise
    except yaml.YAMLError:
        return text
    if _has_comment(text):
        return text.strip()
    written_empty = text.strip() in ("", "null", "Null", "NULL", "~", "''", '""', "[]")
    if not written_empty and (value in (None, "") or value == [None]):
        return text.strip()
    if isinstance(value, dict | list) and not text.strip().startswith(("{", "[")):
        # "Q1: Comments" (a survey export's column) or "- text" read as a mapping or a list, and
        # the error quoted a dict the user never wrote: only {...} and [...] make one on the command line
        return text.strip()
    return value


def _has_comment(text: str) -> bool:
    """Whether YAML drops a comment from ``text``: a ``#`` outside every token (inside one, as in
    ``x#y`` or ``"a #b"``, it is text)."""
    spans = [(t.start_mark.index, t.end_mark.index) for t in yaml.scan(text, Loader=_ConfigLoader)]
    return any(ch == "#" and not any(a <= i < b for a, b in spans) for i, ch in enumerate(text))


class _MethodOverridden(dict):
    """``raw["method"]`` as overrides left it, remembering in ``given`` which options the command
    line set: ``method=NAME`` drops the run file's options but keeps those (see ``_override_method``)."""

    def __init__(self, mapping: Any = (), given: Any = ()) -> None:
        super().__init__(mapping)
        self.given = frozenset(given)


def _method_option_names(name: Any) -> set[str] | None:
    """The options method ``name`` takes; None when no method has that name (its check says so)."""
    if not isinstance(name, str):
        return None
    from tunelab.methods import get_method  # lazy: the methods import torch, and this module

    try:
        return {f.name for f in fields(get_method(name).config_cls)}
    except ConfigError:
        return None


def _options_of_any_method() -> set[str]:
    """Every option some registered method takes."""
    from tunelab.methods import available_methods  # lazy, as in _method_option_names

    return set().union(*(_method_option_names(name) or set() for name in available_methods()))


def _override_method(
    current: Any, keys: list[str], value: Any, item: str, *, warn: bool = True
) -> dict[str, Any]:
    """``raw["method"]`` after the override ``item`` (``method=NAME``, or ``method.KEY=value``).

    ``method=NAME`` naming another method replaces it, and drops the run file's options (a YAML's lora
    ``r: 16`` under method=full would be an unknown option). Options given on the command line are
    kept, before ``method=NAME`` as after it, where the new method takes them; another method's are
    dropped with a warning naming them (unless ``warn`` is False: see ``apply_override``), and one no
    method takes is kept for the new method to refuse (a typo).
    """
    if not keys and isinstance(value, dict):
        # method={name: lora, r: 16}: the YAML shorthand on the command line, read as method=lora
        # then method.r=16 (it was refused as "method.name={...} (use a single text value)")
        result: Any = current
        if "name" in value:
            result = _override_method(result, [], value["name"], item, warn=warn)
        for key, option in value.items():
            if key != "name":
                result = _override_method(result, [key], option, item, warn=warn)
        return result if isinstance(result, _MethodOverridden) else _MethodOverridden(result or {}, ())
    given = set(getattr(current, "given", ()))
    if isinstance(current, str):
        current = {"name": current}
    elif not isinstance(current, dict):  # None, or something from_dict refuses (`method: 5`)
        if keys and current is not None:
            raise ConfigError(
                f"override {item!r}: method={current!r} is neither a method name nor a mapping "
                "(e.g. method: {name: lora, r: 16})"
            )
        current = {}
    current = dict(current)
    name = current.get("name", "full")
    # A saved config.json always has "options", often empty ({}); only the YAML shorthand
    # (method: {name: lora, r: 16}) keeps options beside the name.
    if "options" in current:
        options = current["options"] if current["options"] is not None else {}
    else:
        options = {k: v for k, v in current.items() if k != "name"}
    if not keys:  # method=NAME
        if value == name:
            current["name"] = value
            return _MethodOverridden(current, given)
        kept = {k: v for k, v in options.items() if k in given} if isinstance(options, dict) else {}
        if kept:
            known = _method_option_names(value)
            # Only an option of another method is dropped: one no method takes is a typo, kept so
            # that the new method refuses it naming its options (`method.rank=4 method=lora` trained
            # r=8 after a warning, where `method=lora method.rank=4` was refused).
            some_method = _options_of_any_method()
            dropped = [k for k in kept if known is not None and k not in known and k in some_method]
            if dropped and warn:
                logger.warning(
                    "method=%s: dropped %s, given as an override, which %s does not take",
                    value,
                    ", ".join(f"method.{k}" for k in dropped),
                    value,
                )
            kept = {k: v for k, v in kept.items() if k not in dropped}
        return _MethodOverridden({"name": value, "options": kept} if kept else {"name": value}, kept)
    opts_key = keys if keys[0] != "options" else keys[1:]
    if opts_key == ["name"]:
        current["name"] = value
        return _MethodOverridden(current, given)
    if not opts_key:  # method.options={r: 16}: the options as a whole (MethodConfig checks a mapping)
        return _MethodOverridden({"name": name, "options": value}, value if isinstance(value, dict) else ())
    if not isinstance(options, dict):
        raise ConfigError(f"method.options={options!r} must be a mapping, e.g. {{r: 16}}")
    option = ".".join(opts_key)
    return _MethodOverridden({"name": name, "options": {**options, option: value}}, given | {option})


def apply_override(raw: dict[str, Any], item: str, *, warn: bool = True) -> None:
    """Apply one ``dotted.key=value`` override to a raw config mapping, in place.

    ``warn=False`` for overrides applied a second time (``tunelab validate`` rebuilds a config
    around its refused fields): "dropped method.X" was printed once for each time.
    """
    if "=" not in item:
        raise ConfigError(f"override {item!r}: use key=value, e.g. train.epochs=3")
    key, _, text = item.partition("=")
    parts = [k for k in key.strip().split(".") if k]
    if not parts:
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = _parse_value(text)
    except DuplicateKeyError as exc:
        raise ConfigError(f"override {item!r}: {exc.advice()}") from None
    if parts[0] == "method":
        raw["method"] = _override_method(raw.get("method"), parts[1:], value, item, warn=warn)
        return
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node = child
    current = node.get(parts[-1])
    if isinstance(current, dict) and isinstance(value, dict):
        # `train={epochs: 1}` replaced the whole section: the run file's batch_size, threads, ... went
        # back to their defaults without a word. Its fields are set one by one, as train.epochs=1.
        current.update(value)
        return
    node[parts[-1]] = value
