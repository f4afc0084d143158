"""The task contract: everything that differs between, say, sentence classification and NER.

A task is one folder under ``tunelab/tasks/`` whose ``__init__.py`` ends with
``register_task(...)`` (the method registry's habit). The training loop, ``evaluate``,
``compress``, ``serve`` and the CLI only call these hooks and never compare task names, so a new
task (question answering, regression) is a new folder, not edits in twenty files.

The shapes that cross the contract:

- ``Encoded`` (``tunelab.data.encoding``): token ids per example, unpadded; ``labels`` holds
  whatever ``batch_labels`` turns into a tensor; ``extra`` holds per-example data the task needs to
  decode (NER: the sentence each window came from, word ids, character offsets).
- logits: a float numpy array, (N, num_labels) for sequence tasks or (N, T, num_labels) for token
  tasks, padded with zeros to the longest example of the set (``tunelab.inference.forward``).
- metrics: a JSON-able dict; ``headline`` picks the scalars logged each evaluation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tunelab.errors import ConfigError

if TYPE_CHECKING:
    # Annotations only: ``data.task`` is validated through the registry when a config is read,
    # which must not import torch (``tunelab validate``, ``tunelab runs`` stay light).
    import numpy as np
    import torch
    from pydantic import BaseModel
    from torch import nn

    from tunelab.config import DataConfig
    from tunelab.data.encoding import Encoded
    from tunelab.data.labels import LabelMap
    from tunelab.data.splits import Splits
    from tunelab.data.summary import SummaryTerms, SummaryView
    from tunelab.evaluate.mistakes import Mistakes
    from tunelab.evaluate.run_context import ReportContext


class Task(ABC):
    """One task: data, labels, head, loss, metrics, report, predictions, export parity, API schema.

    Attributes:
        name: the ``data.task`` value that selects it (``single_label``, ``token_classification``).
        family: the folder it lives in (``classification``); several names may share one.
        description: one line for ``tunelab tasks`` and error messages.
        headline_keys: the scalar metrics logged at each evaluation and shown first.
        metrics: the ``train.metric`` values a run of this task may select checkpoints on; the
            first is the default (``train.metric: auto``).
        lower_is_better: the metrics where a smaller value is the better model (``mae``,
            ``perplexity``, ``error_rate``); any name ending in ``loss`` is one too. The best
            checkpoint, early stopping, the report's notes and a search's direction read it
            (``metric_lower_is_better``): every other metric is maximised.
        result_schema: the pydantic model of one text's result in the HTTP API.
        output: what one text's prediction is, for code built on runs (the apps) that needs a
            kind of model without naming tasks: ``label`` (one class), ``labels`` (any number of
            classes) or ``entities`` (spans of text with a type).
        augments_text: the labels belong to the whole text, so text augmentation (``augment``:
            EDA's word insertions, swaps, deletions) keeps them; False where labels are tied to
            words (a tag per word), and ``check_run`` refuses ``augment.methods``.
        uses_stride: long texts are cut into windows sharing ``model.stride`` tokens (else they
            are truncated and the stride is never read).
        samples_shots: ``load_splits`` draws ``data.shots`` rows per label itself; False (the
            default), and ``check_run`` refuses ``data.shots`` in one line, since a task that
            ignores it trained on every row while the run file said N per label.
        labels_per_row: each example's ``labels`` entry is that row's label id (a list of ids
            for a set of labels), never one per word, and ``load_splits`` keeps the order
            ``data.labels`` gives: what ``data.labels``' check, ``train --from`` and its
            rehearsal sample need. False (the default, and NER: a tag per word): those refuse.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    description: ClassVar[str] = ""
    output: ClassVar[str] = "label"
    augments_text: ClassVar[bool] = False
    uses_stride: ClassVar[bool] = False
    samples_shots: ClassVar[bool] = False
    labels_per_row: ClassVar[bool] = False
    headline_keys: ClassVar[tuple[str, ...]] = ("loss",)
    metrics: ClassVar[tuple[str, ...]] = ("loss",)
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"loss"})

    def entity_types(self, labels: LabelMap) -> list[str]:
        """The entity types a run of this task finds (``PER``, ``DATE``), sorted; none by default."""
        return []

    # --- data -------------------------------------------------------------------------------

    @abstractmethod
    def load_splits(self, data: DataConfig) -> Splits:
        """Read, validate and split the labelled data; build the label map from train."""

    def frame_columns(self, data: DataConfig) -> list[tuple[str, str]]:
        """(setting, column) pairs a DataFrame given for a split must hold (``tunelab.train(train=df)``),
        checked before the frame is written so that the message can name the DataFrame.

        Every pair is required. A task whose frames have several layouts (NER: ``tokens`` + ``tags``
        or ``text`` + ``spans``) returns none and lets its reader check the written JSON lines,
        naming every layout."""
        needed = [("data.text_column", data.text_column), ("data.label_column", data.label_column)]
        if data.text_pair_column:
            needed.insert(1, ("data.text_pair_column", data.text_pair_column))
        return needed

    def summary_view(self, dataset: Any, labels: LabelMap) -> SummaryView:
        """What the data summary (``tunelab validate``) counts in ``dataset``: each example's text,
        what makes two the same, and the label names it counts towards.

        The default knows only ``texts`` (and ``text_pairs``), so it counts rows, duplicates and
        lengths but no labels; a task with labels says what they are.
        """
        from tunelab.data.summary import SummaryView

        texts, pairs = list(dataset.texts), getattr(dataset, "text_pairs", None)
        # A pair is two texts, compared text by text: one "text<TAB>pair" string lost the boundary
        # once spacing was normalised ("A man plays" + "the guitar" equalled "A man" + "plays the guitar").
        keys = texts if pairs is None else list(zip(texts, pairs, strict=True))
        return SummaryView(keys=keys, labels=[[] for _ in texts], texts=texts, pairs=pairs)

    def summary_terms(self) -> SummaryTerms:
        """What the data summary calls an example, a label count and a long input's fate."""
        from tunelab.data.summary import SummaryTerms

        return SummaryTerms()

    @abstractmethod
    def read_labelled(self, path: str | Path, data: DataConfig, labels: LabelMap, *, field: str) -> Any:
        """Read one labelled file (``tunelab eval --data``, export parity) with a run's labels.

        Raises:
            DataError: naming the file and row of a malformed record or an unknown label.
        """

    def prepare_tokenizer(self, tokenizer: Any) -> dict[str, Any]:
        """Set up a run's tokenizer for this task, in place; what it changed, as JSON (``{}``: nothing).

        Called by the trainer once, when a run begins, before anything is encoded and before the
        tokenizer is saved as the run's ``tokenizer/``; the result is recorded in run.json
        (``tokenizer_prepared``). A resume from a checkpoint, and ``train --from``, call it again
        only where that run recorded it (a run begun before the hook existed keeps its tokenizer
        as it was, and finishes as it began); prediction, eval, export and serve use the saved
        tokenizer as it is and never call it. ``encode``/``encode_texts`` must not change the
        tokenizer they are given. NER sets a RoBERTa-style tokenizer to read each word after a
        space (``{"word_prefix_space": True}``). The default changes nothing.
        """
        return {}

    @abstractmethod
    def encode(self, tokenizer: Any, dataset: Any, *, max_length: int, stride: int = 0) -> Encoded:
        """Tokenise a labelled dataset; labels aligned to what ``batch_labels`` expects.

        ``stride`` (``model.stride``): tokens shared by consecutive windows where a task splits a
        long input into windows instead of truncating it (token classification); others ignore it.
        """

    @abstractmethod
    def encode_texts(
        self,
        tokenizer: Any,
        texts: list[str],
        text_pairs: list[str] | None,
        *,
        max_length: int,
        stride: int = 0,
    ) -> Encoded:
        """Tokenise unlabelled texts for prediction (``stride`` as in ``encode``).

        ``Encoded.text_lengths`` are what metering counts, one per text: ``lengths`` where each
        text is one example; a task that splits texts into overlapping windows sets
        ``Encoded.text_tokens`` to each text's tokens counted once.
        """

    @abstractmethod
    def batch_labels(self, enc: Encoded, indices: list[int], *, width: int, num_labels: int) -> torch.Tensor:
        """The label tensor of a batch padded to ``width`` tokens (soft targets pass through)."""

    # --- model and loss ---------------------------------------------------------------------

    @abstractmethod
    def build_model(self, path: Path, labels: LabelMap, *, pooling: str, seed: int | None) -> nn.Module:
        """A Hugging Face model: the pre-trained encoder at ``path`` and a fresh head for ``labels``."""

    @abstractmethod
    def load_model(self, folder: Path) -> nn.Module:
        """Rebuild a whole fine-tuned model written by ``save_pretrained`` (method ``full``)."""

    def model_skeleton(self, path: Path, *, pooling: str) -> nn.Module | None:
        """The model ``build_model`` makes on ``path`` (for any labels), built from its config alone,
        for the checks that read only its layers: ``tunelab validate`` matches ``method.target_modules``
        against its module names, so a typo is refused before training, whatever the task.

        Called on the meta device (nothing allocated): build it from ``config.json`` and never read
        weights (no ``from_pretrained``). An exception means "cannot say". None (the default): the
        task cannot say either, and those checks are left to ``train``.
        """
        return None

    @abstractmethod
    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor | None,
        *,
        smoothing: float = 0.0,
    ) -> torch.Tensor:
        """The training loss of a batch; ``smoothing`` is ``train.label_smoothing`` (0: none)."""

    def class_weights(self, dataset: Any, num_labels: int) -> torch.Tensor | None:
        """Weights for ``train.class_weights: true``; None where the task has none."""
        return None

    def probe_head(self, model: nn.Module, enc: Encoded, *, num_labels: int, seed: int) -> float:
        """Fit the fresh head on frozen features (``train.head_init: probe``); its training accuracy.

        Returns NaN where the task has no probe: the head then stays the random one.
        """
        return float("nan")

    @abstractmethod
    def soft_targets(self, logits: torch.Tensor) -> torch.Tensor:
        """A teacher's logits -> the probabilities a student is distilled on (same loss)."""

    def logits_from_probabilities(self, probs: np.ndarray) -> np.ndarray:
        """The inverse of ``soft_targets``: logits whose probabilities are ``probs``.

        What an ensemble (``tunelab.ensembling``) hands on after averaging its members'
        probabilities, so scoring and decoding see logits as from any model. The default,
        ``log p``, inverts a softmax over the last axis; a task with other probabilities overrides it.
        """
        import numpy as np

        return np.log(np.clip(probs, 1e-12, 1.0))

    # --- evaluation -------------------------------------------------------------------------

    @abstractmethod
    def score(
        self, logits: np.ndarray, enc: Encoded, labels: LabelMap, *, threshold: float | None = None
    ) -> tuple[dict[str, Any], float | None]:
        """Metrics (with ``loss``) of logits against ``enc``'s labels.

        Returns:
            (metrics, decision threshold used or tuned here; None when the task has none)
        """

    def tunes_threshold(self) -> bool:
        """True when ``score`` tunes a decision threshold on dev that test must reuse."""
        return False

    def headline(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The scalar metrics worth logging at each evaluation."""
        return {k: float(metrics[k]) for k in self.headline_keys if metrics.get(k) is not None}

    @abstractmethod
    def parity_metric(self, run_metric: str) -> str:
        """The percentage an export must keep: the run's selection metric where it is one."""

    @abstractmethod
    def agreement(
        self, before: np.ndarray, after: np.ndarray, *, threshold: float | None, enc: Encoded | None = None
    ) -> float:
        """The share of examples whose decoded predictions are identical before and after export.

        ``enc`` is what both logits were computed from, for a task that reads only some positions
        (NER: a word's first sub-token); a task that needs nothing from it ignores it.
        """

    @abstractmethod
    def write_report(
        self,
        out_dir: Path,
        metrics: dict[str, Any],
        *,
        labels: LabelMap,
        history: list[dict[str, Any]] | None,
        title: str,
        meta: dict[str, Any],
        split: str,
        context: ReportContext | None = None,
    ) -> dict[str, Path]:
        """``report.md`` and ``report.html`` (with plots) of one evaluated split.

        ``context`` (``tunelab.evaluate.run_context``) holds what the report shows around the
        metrics: hyper-parameters, the data summary, notes on training and ``mistakes``' table.
        """

    def mistakes(
        self, logits: np.ndarray, enc: Encoded, dataset: Any, labels: LabelMap, *, threshold: float | None
    ) -> Mistakes | None:
        """The wrong predictions on a labelled split, the most confident first, for the report.

        Each row says what the input was, what it should have been, what the model said and how
        sure it was, in this task's terms (a label; a set of labels; a sentence's entities).
        None where the task has no such table.

        Args:
            logits: as ``score`` takes them.
            enc: ``encode(dataset)``.
            dataset: the split as ``load_splits``/``read_labelled`` read it.
            labels: the run's labels.
            threshold: the decision threshold ``score`` used (tasks with one).
        """
        return None

    # --- prediction -------------------------------------------------------------------------

    @abstractmethod
    def decode(
        self,
        logits: np.ndarray,
        enc: Encoded,
        texts: Sequence[str],
        labels: LabelMap,
        *,
        threshold: float | None,
        top_k: int,
    ) -> list[dict[str, Any]]:
        """One JSON-able result per input text (labels and scores, entities, ...)."""

    @property
    @abstractmethod
    def result_schema(self) -> type[BaseModel]:
        """The pydantic model of one element of ``decode``'s list."""


# --- what a plug-in's hooks return ------------------------------------------------------------
# A task or method from outside tunelab that returns the wrong thing failed far from the cause
# (a KeyError after an epoch, ``'float' object has no attribute 'item'``, a finished run that
# would not load), naming neither the plug-in nor the hook. The core checks what it takes from
# a hook where it takes it, cheaply (a type check, a few dict lookups), and says so in one line.


def metric_lower_is_better(metric: str, task: Task | None = None) -> bool:
    """Whether a smaller ``metric`` is the better model: its name ends in ``loss``, or ``task`` lists
    it in ``lower_is_better``.

    The one rule for the loop's best checkpoint and early stopping, the report's notes and a
    search's direction: by the name alone, a plug-in's ``mae`` or ``perplexity`` was maximised and
    the run kept its worst checkpoint. Without a task (an old caller), the name decides.
    """
    if metric.endswith("loss"):
        return True
    names = getattr(task, "lower_is_better", ()) if task is not None else ()
    if isinstance(names, str):  # `lower_is_better = "mae"`: one name, not its letters
        names = (names,)
    try:
        return metric in names
    except TypeError:  # not a collection of names: the name rule alone
        return False


def plugin_name(plugin: Any) -> str:
    """``module.Class`` of a task (any object), ``module.function`` of a function: where its code is."""
    import types

    if isinstance(plugin, types.FunctionType | types.MethodType | types.BuiltinFunctionType):
        return f"{plugin.__module__}.{plugin.__qualname__}"
    cls = plugin if isinstance(plugin, type) else type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"


def built_in(task: Task) -> bool:
    """Whether ``task`` is one of tunelab's own (its class under ``tunelab.tasks``, as the registry
    tells them apart): a refusal names a plug-in's ``module.Class`` and attributes, where its author
    looks, but a built-in's mean nothing to someone running ``data.task=multi_label``."""
    return type(task).__module__.startswith("tunelab.tasks.")


def task_plugin(task: Task) -> str:
    """How an error names a task: ``task plug-in toy.ToyTask``."""
    return f"task plug-in {plugin_name(task)}"


def described(value: Any) -> str:
    """What a hook returned, in a few words: ``None``, ``dict``, ``tuple of 3``, ``Tensor of shape (8,)``."""
    if value is None:
        return "None"
    if isinstance(value, tuple | list):
        return f"{type(value).__name__} of {len(value)}"
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) or type(shape).__name__ == "Size":
        return f"{type(value).__name__} of shape {tuple(shape)}"
    return type(value).__name__


def wrong_return(who: str, hook: str, value: Any, expected: str) -> ConfigError:
    """The one-line error of a hook that returned the wrong thing: ``task plug-in toy.ToyTask:
    score() returned dict, expected (metrics, threshold)``."""
    return ConfigError(f"{who}: {hook}() returned {described(value)}, expected {expected}")


def checked_score(task: Task, result: Any) -> tuple[dict[str, Any], float | None]:
    """``task.score``'s result, checked to be ``(metrics dict, threshold or None)``."""
    from numbers import Real

    pair = isinstance(result, tuple | list) and len(result) == 2
    if not pair or not isinstance(result[0], dict) or not (result[1] is None or isinstance(result[1], Real)):
        raise wrong_return(
            task_plugin(task), "score", result, "(metrics, threshold): a dict and a number or None"
        )
    return result[0], result[1]


def checked_prepared(task: Task, prepared: Any) -> dict[str, Any]:
    """``task.prepare_tokenizer``'s result, checked to be a dict JSON can hold (run.json records it)."""
    import json

    if not isinstance(prepared, dict):
        raise wrong_return(
            task_plugin(task), "prepare_tokenizer", prepared, "a dict of what it changed ({} if nothing)"
        )
    try:
        json.dumps(prepared)
    except (TypeError, ValueError):
        raise wrong_return(
            task_plugin(task), "prepare_tokenizer", prepared, "a dict of JSON values (run.json records it)"
        ) from None
    return prepared


def checked_encoded(task: Task, enc: Any, hook: str = "encode") -> Any:
    """``task.encode``/``encode_texts``' result, checked to be a ``tunelab.data.encoding.Encoded``
    (a dict from the tokenizer failed later as "'dict' object has no attribute 'input_ids'")."""
    from tunelab.data.encoding import Encoded

    if not isinstance(enc, Encoded):
        raise wrong_return(task_plugin(task), hook, enc, "a tunelab.data.encoding.Encoded")
    return enc


def checked_report(task: Task, written: Any) -> dict[str, Any]:
    """``task.write_report``'s result, checked to be the dict of files it wrote (``report.html``:
    path); None passed silently and the report's path was guessed."""
    if not isinstance(written, dict):
        raise wrong_return(
            task_plugin(task), "write_report", written, "a dict of the files written (name: path)"
        )
    return written


def check_selected_metric(task: Task, metrics: dict[str, Any], metric: str) -> list[str]:
    """Refuse dev metrics without a number for ``metric`` (``train.metric``, one of
    ``task.metrics``), which picks the checkpoints; return the other names of ``task.metrics``
    that ``score`` left out (a run never selecting them trains fine, so they are only reported).

    Run at each dev evaluation (a dict lookup): the loop failed with a bare ``KeyError`` after a
    whole epoch.
    """
    from numbers import Real

    value = metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, Real):
        got = "no such key" if metric not in metrics else f"{type(value).__name__}"
        raise ConfigError(
            f"{task_plugin(task)}: score() returned metrics without a number for {metric!r} "
            f"({got}; keys: {', '.join(map(str, metrics)) or 'none'}), expected every name in its "
            f"metrics ({', '.join(task.metrics)}) with a number"
        )
    return [name for name in task.metrics if name not in metrics]


def checked_splits(task: Task, splits: Any) -> Splits:
    """``task.load_splits``' result, checked to be a ``tunelab.data.splits.Splits`` with a label map."""
    from tunelab.data.labels import LabelMap
    from tunelab.data.splits import Splits

    if not isinstance(splits, Splits):
        raise wrong_return(task_plugin(task), "load_splits", splits, "a tunelab.data.splits.Splits")
    if not isinstance(splits.labels, LabelMap) or splits.train is None or not isinstance(splits.notes, list):
        raise ConfigError(
            f"{task_plugin(task)}: load_splits() returned Splits with train={described(splits.train)}, "
            f"labels={described(splits.labels)}, notes={described(splits.notes)}, expected a training "
            "dataset, a tunelab.data.labels.LabelMap and a list of notes"
        )
    return splits


def refuse_unsampled_shots(task: Task, data: DataConfig) -> None:
    """``data.shots`` is drawn by ``load_splits``; a task that does not (``samples_shots`` False)
    trained on every row while the run file said N a label, so it is refused here, for any task.

    Raises:
        ConfigError: one line naming the task and the setting.
    """
    if data.shots is not None and not task.samples_shots:
        if built_in(task):
            raise ConfigError(
                f"data.shots={data.shots}: {task.name} rows have no one label to draw N rows by; "
                "remove data.shots"
            )
        raise ConfigError(
            f"data.shots={data.shots}: task {task.name} ({plugin_name(task)}) does not sample N rows per "
            "label (its samples_shots is False; few-shot sampling needs one label per row); remove data.shots"
        )


def check_extendable(task: Task, dataset: Any, needed_by: str) -> None:
    """Refuse a training dataset without ``extended(more)``, which adds rows to train (augmented,
    pseudo-labelled, rehearsed; ``more`` is a ``tunelab.data.dataset.Dataset``): a plug-in's
    failed with a bare AttributeError after the model was built.

    Raises:
        ConfigError: one line naming the task, its dataset class and what needed the method.
    """
    if not callable(getattr(dataset, "extended", None)):
        raise ConfigError(
            f"{task_plugin(task)}: its training dataset ({type(dataset).__name__}) has no extended(more), "
            f"which {needed_by} calls to add rows to train; give the class one, returning a new "
            "dataset with more's rows added (the Task protocol, tunelab.tasks.base)"
        )
