"""Load a finished run and predict labels for texts, lists or files.

``Predictor`` is the one object evaluate, predict, export and serve share: it owns the tokenizer,
an inference backend (PyTorch eager with adapters merged for a trained run, ONNX Runtime or int8
for an exported artifact; see ``tunelab.inference.backends``), the label map and the decision threshold.
"""

from __future__ import annotations

import logging
import numbers
import operator
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab.config import RunConfig
from tunelab.data import LabelMap
from tunelab.data.encoding import Encoded
from tunelab.data.labelled import LabelledTexts
from tunelab.data.scripts import has_visible_text
from tunelab.errors import ConfigError, DataError, RunError
from tunelab.inference.backends import Backend, LoadContext, TorchBackend, get_format
from tunelab.runs import RunFolder, find_run
from tunelab.runs.json_files import read_run_object
from tunelab.runs.labels_check import check_threshold, read_run_labels
from tunelab.tasks import Task, get_task

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


class Predictor:
    """A trained model ready for inference; its task (``labels.task``) encodes texts and decodes logits.

    Example:
        >>> predictor = tunelab.load("runs/banking77")  # doctest: +SKIP
        >>> predictor.predict("I still have not received my new card")["label"]  # doctest: +SKIP
        'card_arrival'
    """

    def __init__(
        self,
        backend: Backend,
        tokenizer: Any,
        labels: LabelMap,
        *,
        config: RunConfig,
        threshold: float | None = None,
        run: RunFolder | None = None,
        task: Task | None = None,
    ) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.labels = labels
        self.task: Task = task if task is not None else get_task(labels.task)
        self.config = config
        self.threshold = threshold if threshold is not None else 0.5
        self.run = run

    def __repr__(self) -> str:
        # the default ``<... Predictor object at 0x7f...>`` said nothing about which model was loaded
        where = str(self.run.root) if self.run is not None else None  # zero_shot_predictor: no folder
        return (
            f"Predictor(run={where!r}, format={self.format!r}, task={self.task_name!r}, "
            f"num_labels={len(self.labels)})"
        )

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """Open a finished run folder or an exported artifact (see ``tunelab.runs``)."""
        from tunelab.models import load_tokenizer
        from tunelab.models.classifier import keeping_global_rng

        run = find_run(path)
        summary, config, labels, threshold = read_run_files(run)
        loader = get_format(summary.get("format", "torch"))
        # An adapter run's base gets a fresh head (the adapter's saved one replaces it), and peft
        # draws its new layers' weights before the saved ones go in: both from torch's global
        # stream, so a program's torch.manual_seed(0) before loading was advanced by the load.
        with keeping_global_rng():
            backend = loader(LoadContext(run=run, config=config, labels=labels, summary=summary))
        tokenizer = load_tokenizer(run.tokenizer)
        return cls(backend, tokenizer, labels, config=config, threshold=threshold, run=run)

    @property
    def format(self) -> str:
        """``torch`` for a trained run, else the export format (``onnx``, ``onnx-int8``, ...)."""
        return self.backend.name

    @property
    def model(self) -> Any:
        """The torch module of a trained run (export starts from it)."""
        if not isinstance(self.backend, TorchBackend):
            where = self.run.root if self.run else "model"
            raise RunError(f"{where}: a {self.format} artifact has no torch model; export from the run")
        return self.backend.module()

    @property
    def task_name(self) -> str:
        """The registered name of the run's task (``single_label``, ...), as run.json and the API say."""
        return self.task.name

    @property
    def output(self) -> str:
        """What one prediction is: ``label``, ``labels`` (multi-label) or ``entities`` (NER).

        Code built on runs (the apps) checks this instead of task names, so a new task with the
        same kind of output works there unchanged.
        """
        return self.task.output

    @property
    def entity_types(self) -> list[str]:
        """The entity types an NER run finds (``["LOC", "ORG", "PER"]``); empty for classifiers."""
        return self.task.entity_types(self.labels)

    def dev_split(self) -> LabelledTexts | None:
        """The run's own dev split (texts and label names, read again from its data), or None.

        None when the run had no dev split: neither ``data.dev`` nor a carved ``data.dev_size``, or
        no training file to carve it from (a zero-shot classifier). For calibrating or tuning on top
        of a run (the support bot) without asking for another file. ``rows`` count the split's rows
        from 1.

        Raises:
            DataError: the run's data files can no longer be read (moved, changed).
            RunError: the run predicts entities: its dev split is not texts with labels.
        """
        if self.output == "entities":
            raise RunError(f"{self.run.root if self.run else 'run'}: dev_split() is for classification runs")
        data = self.config.data
        # dev_size keeps its default (0.1) in a run with no training data: reading that run's splits
        # failed with "data.train is not set", which the support bot reported as unreadable data
        if not data.train or not (data.dev or data.dev_size):
            return None
        splits = self.task.load_splits(data)
        if splits.dev is None:
            return None
        names = splits.labels.names
        ids = splits.dev.labels or []
        multi = self.output == "labels"
        labels = [[names[i] for i in row] if multi else names[row] for row in ids]
        return LabelledTexts(
            texts=list(splits.dev.texts),
            labels=labels,
            rows=list(range(1, len(splits.dev.texts) + 1)),
            source=str(splits.dev.source),
        )

    @property
    def text_pair_column(self) -> str | None:
        """The run's ``data.text_pair_column`` when it was trained on text pairs, else None."""
        return self.config.data.text_pair_column

    def logits(
        self,
        texts: str | Sequence[str] | pd.Series,
        text_pairs: str | Sequence[str] | pd.Series | None = None,
        *,
        batch_size: int = 64,
    ) -> np.ndarray:
        """Raw logits in input order, one row per text: (N, num_labels), or (N, T, num_labels) for a
        per-token task.

        ``texts`` are checked as :meth:`predict` checks them: one ``str`` is one text (one row), a
        Series gives its values in order, and no texts give a float32 array with no rows
        ((0, num_labels), or (0, 0, num_labels) for a per-token task).

        Per token (NER), row ``i`` holds text ``i``'s tokens, special ones included, as the tokenizer
        gives the whole text (``encode([text]).text_lengths[0]`` of them), zero-padded to the longest
        text's ``T``. A text longer than ``model.max_length`` is read in overlapping windows; each of
        its tokens has the logits of the window where it is farthest from a cut, the window
        :meth:`predict` takes each word's tag from.

        Raises:
            ConfigError: ``batch_size`` is not a whole number of 1 or more.
            DataError: a DataFrame, mapping or path, an empty or non-text item, or the wrong kind
                of input for the run (pairs or not), as :meth:`predict` says.
        """
        batch_size = _check_batch_size(batch_size)
        _refuse_containers(texts, "texts", paths=False)
        _refuse_containers(text_pairs, "text_pairs", paths=False)
        if _is_series(texts):
            texts, text_pairs = _series_inputs(texts, text_pairs)
        batch, pairs, _ = self._checked_batch(texts, text_pairs)
        if not batch:  # the tokenizer fails on no texts (IndexError)
            rows = (0, 0) if self.output == "entities" else (0,)
            return np.zeros((*rows, len(self.labels)), dtype=np.float32)
        enc = self.encode(batch, pairs)
        logits = self.backend.logits(enc, batch_size=batch_size)
        # A per-token task's long text is several windows (examples): two texts in gave 15 rows,
        # row 1 a window of the first text, not the second text.
        return logits if len(enc) == len(batch) else _one_row_per_text(logits, enc, len(batch), self.task)

    def encode(self, texts: list[str], text_pairs: list[str] | None = None) -> Encoded:
        """Tokenise with the run's settings (``Encoded.text_lengths`` are the token counts metering uses)."""
        from tunelab.tasks.base import checked_encoded

        enc = self.task.encode_texts(
            self.tokenizer,
            texts,
            text_pairs,
            max_length=self.config.model.max_length,
            stride=self.config.model.stride,
        )
        return checked_encoded(self.task, enc, "encode_texts")

    def predict_encoded(
        self, enc: Encoded, texts: Sequence[str], *, top_k: int = 3, batch_size: int = 64
    ) -> list[dict[str, Any]]:
        """Results for texts already encoded by :meth:`encode` (serve encodes first to count tokens).

        ``texts`` are those ``enc`` was made from: a task may quote them back (entity spans).
        """
        top_k = _check_top_k(top_k)
        batch_size = _check_batch_size(batch_size)
        if not len(enc):
            return []
        return self._decode(self.backend.logits(enc, batch_size=batch_size), enc, texts, top_k)

    def predict(
        self,
        texts: str | Sequence[str] | pd.Series | os.PathLike[str],
        text_pairs: str | Sequence[str] | pd.Series | None = None,
        *,
        top_k: int = 3,
        batch_size: int = 64,
    ) -> dict[str, Any] | list[dict[str, Any]] | pd.DataFrame:
        """Predict one text, a list of texts, a DataFrame column, or a whole file.

        - a ``str`` is one text: returns one result (a dict);
        - a list (any sequence) of texts: returns a list of results, in order;
        - a pandas ``Series`` (``df["text"]``): returns a DataFrame with the Series' index and one
          column per result field, so ``df.join(predictor.predict(df["text"]))`` lines up;
        - a file as a ``pathlib.Path`` (CSV/TSV/JSONL/Parquet, read with its own layout): returns
          a DataFrame of one row per kept input row, with the rows ``tunelab predict --input FILE
          --output X.jsonl`` would write: the file's columns (with their types), ``row``, ``text``,
          then the result fields (``label``, ``score``, and ``top_k`` as one column of lists of
          ``{"label", "score"}``, not the CSV output's flat ``top_1_label``, ``top_1_score``, ...).

        A run trained on text pairs (``data.text_pair_column``) needs ``text_pairs``, the second
        text of each (``predict("premise", "hypothesis")``); any other run refuses them.
        Each result is what the run's task decodes (``Task.decode``); for classification
        ``label`` and ``score`` (the most likely label and its probability), ``top_k``: the
        ``top_k`` most likely labels with probabilities, and for multi-label ``labels`` above the
        threshold with their ``scores``.

        Raises:
            ConfigError: ``batch_size`` or ``top_k`` is not a whole number of 1 or more (a
                numpy integer is one).
            DataError: an empty or non-text item (named by its position, or its index in a
                Series), or the wrong kind of input for the run (pairs or not).
        """
        batch_size = _check_batch_size(batch_size)
        top_k = _check_top_k(top_k)
        if isinstance(texts, os.PathLike):
            if text_pairs is not None:
                raise DataError(f"{texts}: a file brings its own text_pair column; give no text_pairs")
            return self._predict_path(Path(texts), top_k=top_k, batch_size=batch_size)
        _refuse_containers(texts, "texts")
        _refuse_containers(text_pairs, "text_pairs")
        if _is_series(texts):
            return self._predict_series(texts, text_pairs, top_k=top_k, batch_size=batch_size)
        batch, pairs, single = self._checked_batch(texts, text_pairs)
        if not batch:
            return []
        results = self.predict_encoded(self.encode(batch, pairs), batch, top_k=top_k, batch_size=batch_size)
        return results[0] if single else results

    def _checked_batch(
        self, texts: str | Sequence[str], text_pairs: str | Sequence[str] | None
    ) -> tuple[list[str], list[str] | None, bool]:
        """``texts`` and ``text_pairs`` as lists, checked for this run, and whether ``texts`` was one
        text: what ``predict`` and ``logits`` take alike (``logits`` read one text as one character
        per text, and failed on no texts inside the tokenizer)."""
        single = isinstance(texts, str)
        if isinstance(texts, str) and _looks_like_a_file(texts):
            logger.warning(
                "%r is predicted as a text; to predict the file, pass pathlib.Path(%r)", texts, texts
            )
        batch = [texts] if single else list(texts)
        pairs = [text_pairs] if isinstance(text_pairs, str) else _as_list(text_pairs)
        self.check_pairs(batch, pairs)
        for what, items in (("text", batch), ("text_pairs", pairs or ())):
            for i, text in enumerate(items):
                if not isinstance(text, str) or not has_visible_text(text):
                    raise DataError(
                        f"{what} {i + 1}: empty or not a string{_invisible(text)}; give non-empty texts"
                    )
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as exc:  # "\ud800" in JSON, a Latin-1 byte in argv
                    bad = exc.start
                    raise DataError(
                        f"{what} {i + 1}: not valid Unicode at position {bad} (a lone surrogate, or bytes "
                        "in another encoding than UTF-8); fix the text"
                    ) from None
        return batch, pairs, single

    def _predict_series(
        self, texts: pd.Series, text_pairs: Any, *, top_k: int, batch_size: int
    ) -> pd.DataFrame:
        import pandas as pd

        batch, pairs = _series_inputs(texts, text_pairs)
        results = self.predict(batch, pairs, top_k=top_k, batch_size=batch_size)
        # No rows gave a frame with no columns: ``df.join(preds)[["label", "score"]]`` on a filtered
        # frame that happened to be empty raised KeyError.
        if not results:
            return pd.DataFrame([], index=texts.index, columns=self._result_fields(top_k))
        return pd.DataFrame(results, index=texts.index)

    def _result_fields(self, top_k: int) -> list[str]:
        """The fields of one result, in the order ``predict`` gives them, with no text to predict.

        One row of zero logits for a one-word text is decoded as any result is (encoded with the
        run's settings, without running the model), so they are the task's own fields, whatever it
        is (a plug-in's too) and whatever ``top_k`` adds.
        """
        enc = self.encode(["x"], ["x"] if self.text_pair_column else None)
        rows = (
            (len(enc), max(len(ids) for ids in enc.input_ids)) if self.output == "entities" else (len(enc),)
        )
        return list(self._decode(np.zeros((*rows, len(self.labels)), dtype=np.float32), enc, ["x"], top_k)[0])

    def _predict_path(self, path: Path, *, top_k: int, batch_size: int) -> pd.DataFrame:
        """The DataFrame of ``path``'s predictions. The file is predicted a chunk at a time
        (``files.CHUNK_ROWS`` rows), as ``predict_file`` does; the records returned are whole."""
        from tunelab.inference.files import _records_and_input_types, frame_keeping_types

        # the input's columns keep their file's types, as the CLI writes them (an id 7 beside a
        # null is 7, not 7.0)
        records, echoed = _records_and_input_types(self, path, top_k, batch_size, None)
        return frame_keeping_types(records, echoed)

    def check_pairs(self, texts: list[str], pairs: list[str] | None) -> None:
        """A pair model gets pairs, a single-text model none, and one pair text per text.

        Raises:
            DataError: the wrong kind of input, named. ``predict`` and ``logits`` check it; code
                that calls the backend itself must (unchecked, a pair model's first texts are scored
                alone, or a single-text model's texts with a second one).
        """
        column = self.text_pair_column
        if column and pairs is None:
            raise DataError(
                f"this run was trained on text pairs (data.text_pair_column={column!r}): "
                "give text_pairs, the second text of each, e.g. predict(text, text_pair)"
            )
        if not column and pairs is not None:
            raise DataError("this run classifies single texts: give no text_pairs")
        if pairs is not None and len(pairs) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(pairs)} text_pairs: give one per text")

    def _decode(
        self, logits: np.ndarray, enc: Encoded, texts: Sequence[str], top_k: int
    ) -> list[dict[str, Any]]:
        return self.task.decode(logits, enc, texts, self.labels, threshold=self.threshold, top_k=top_k)


def read_run_config(run: RunFolder) -> RunConfig:
    """The run's ``config.json`` as a ``RunConfig``.

    Raises:
        RunError: the file is missing, unreadable, not JSON or not a JSON object, naming it (it was
            "unexpected JSONDecodeError", naming no file).
    """
    return RunConfig.from_dict(_read_object(run.config_json))


def read_run_files(run: RunFolder) -> tuple[dict[str, Any], RunConfig, LabelMap, float | None]:
    """A run's run.json, config.json (its data files as the run resolved them) and labels.json,
    checked against each other before anything is decoded with them, and its tuned threshold: what
    ``Predictor.load`` and the server's model loader both read (the loader had its own copy).

    Raises:
        RunError: a file is damaged, labels.json does not fit the run, or the threshold is no
            number in (0, 1).
    """
    config = read_run_config(run)
    summary = read_run_summary(run)
    labels = read_run_labels(run, summary, config)
    threshold = check_threshold(summary, run)
    return summary, with_training_paths(config, summary), labels, threshold


def read_run_summary(run: RunFolder) -> dict[str, Any]:
    """The run's ``run.json``; {} only when there is none (``RunFolder.read_summary`` also gives {}
    for a damaged one, which ``tunelab runs`` lists as such).

    Loading a run needs it whole: read as {}, an exported ONNX artifact was loaded as a torch run
    (failing on its weights) and a multi-label run's tuned threshold silently became 0.5.

    Raises:
        RunError: run.json exists but cannot be read or is not a JSON object, naming it.
    """
    if not run.run_json.exists():
        return {}
    return _read_object(run.run_json)


def _read_object(path: Path) -> dict[str, Any]:
    """config.json or run.json, whole: either damaged is one line naming the file, not a traceback."""
    return read_run_object(
        path, lambda why: f"{path}: cannot read ({why}); the run folder is damaged: train or export it again"
    )


def _whole_number(value: Any) -> int | None:
    """``value`` as a plain ``int`` when it is a whole number (a numpy integer is one: a count read
    from an array or a DataFrame), else None; a bool is no number here, nor is 2.0 or "2"."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return operator.index(value)


def _check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as an int. 0 failed as "range() arg 3 must not be zero", -1 as "zero-size
    array ...", 2.5 in range(); np.int64(32) was refused with "use 1 or more"."""
    number = _whole_number(batch_size)
    if number is None or number < 1:
        raise ConfigError(f"batch_size {batch_size!r}: use 1 or more")
    return number


def _check_top_k(top_k: Any) -> int:
    """``top_k`` as an int. 0 and -1 gave one label without a word (a slice), None and "2" a
    TypeError, 2.0 a slice error; the CLI refuses ``--top-k 0`` with the same message."""
    number = _whole_number(top_k)
    if number is None or number < 1:
        raise ConfigError(f"top_k {top_k!r}: use 1 or more")
    return number


def with_training_paths(config: RunConfig, summary: Mapping[str, Any]) -> RunConfig:
    """``config`` with its relative data files as the run resolved them when it trained.

    config.json keeps ``data.train`` as typed (``test.txt``); read from another directory, that
    named another file of the same name, which ``predict --input test.txt`` and ``eval --data``
    then read with the run's layout instead of its own (a CSV's header classified as a text), and
    the parity check of ``export`` scored on it. run.json's ``data_files`` (absolute) wins while
    that file exists; a run folder moved with its data keeps the relative path.

    ``self_training.unlabeled`` too (``data_files["unlabeled"]``), where the typed path names
    another file from here, as ``train --resume`` resolves it (``trainer._as_trained``): an
    ensemble reads a member's unlabelled texts to keep them out of its metrics, and built from
    another directory it found no such file (the member's training rows were then not left out
    either) or read a same-named file there without a word.
    """
    import dataclasses

    files = summary.get("data_files")
    if not isinstance(files, Mapping):
        return config  # a run trained before data_files was recorded
    changes = {}
    for field in ("train", "dev", "test"):
        given, absolute = getattr(config.data, field), files.get(field)
        if given and isinstance(absolute, str) and not Path(given).is_absolute() and Path(absolute).exists():
            changes[field] = absolute
    if changes:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, **changes))
    typed, recorded = config.self_training.unlabeled, files.get("unlabeled")
    if (
        typed
        and isinstance(recorded, str)
        and not Path(typed).is_absolute()
        and Path(typed).resolve() != Path(recorded)
        and Path(recorded).exists()
    ):
        # Only where it names another file: one that names the same file from here stays as typed
        # (what ``_as_trained`` keeps, so that a resumed run's config is unchanged by this).
        config = dataclasses.replace(
            config, self_training=dataclasses.replace(config.self_training, unlabeled=recorded)
        )
    return config


def load(path: str | Path) -> Predictor:
    """Load a finished run for prediction: ``tunelab.load("runs/<run>").predict(texts)``."""
    return Predictor.load(path)


def predict(
    run: str | Path | Predictor,
    texts: str | Sequence[str] | pd.Series | os.PathLike[str],
    text_pairs: str | Sequence[str] | pd.Series | None = None,
    *,
    top_k: int = 3,
    batch_size: int = 64,
) -> dict[str, Any] | list[dict[str, Any]] | pd.DataFrame:
    """Predict with a run in one call: ``tunelab.predict("runs/demo", df["text"])``.

    ``run`` is a run or artifact folder, or a ``Predictor`` already loaded (loading takes seconds:
    keep ``tunelab.load(run)`` to predict many times). ``texts`` is anything
    :meth:`Predictor.predict` takes: a text, a list, a DataFrame column, or a file as a ``Path``.

    Example:
        >>> tunelab.predict("runs/demo", ["where is my card?", "top up failed"])  # doctest: +SKIP
    """
    predictor = run if isinstance(run, Predictor) else Predictor.load(run)
    return predictor.predict(texts, text_pairs, top_k=top_k, batch_size=batch_size)


_DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt", ".xlsx")


def _looks_like_a_file(text: str) -> bool:
    """A one-line text that names an existing data file: probably meant as the file."""
    if "\n" in text or not text.lower().endswith(_DATA_SUFFIXES):
        return False
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long for the OS (ENAMETOOLONG), a NUL byte: a text
        return False


def _one_row_per_text(logits: np.ndarray, enc: Encoded, n_texts: int, task: Task) -> np.ndarray:
    """(N, T, L) from the (windows, T_window, L) logits of texts split into overlapping windows.

    A text's windows are consecutive slices of its one token sequence (``enc.text_lengths`` tokens,
    each counted once), each with the same special tokens, so each window after the first starts
    as many positions back into the one before it as the windows' lengths add up to more than the
    text's. Each position takes the window where it is farthest from a cut edge (a text's own start
    and end are none), the earlier window on a tie: ``merge_windows``' rule, which ``predict``
    decodes with, so the argmax at a word's position is the tag ``predict`` gave it.

    Raises:
        RunError: the task splits texts without saying which text each example is of.
    """
    extra = enc.extra or {}
    if not all(key in extra for key in ("sample", "cut_left", "cut_right")):
        raise RunError(
            f"task {task.name} encodes {n_texts} texts as {len(enc)} examples without Encoded.extra's "
            "sample, cut_left and cut_right: logits() cannot give one row per text; use predict()"
        )
    lengths = enc.text_lengths
    out = np.zeros((n_texts, max(lengths), logits.shape[-1]), dtype=logits.dtype)
    windows: dict[int, list[int]] = {}
    for w, s in enumerate(extra["sample"]):
        windows.setdefault(s, []).append(w)
    for s, ws in windows.items():
        sizes = [len(enc.input_ids[w]) for w in ws]
        back, uneven = divmod(sum(sizes) - lengths[s], max(len(ws) - 1, 1))
        if uneven:
            raise RuntimeError("windows do not overlap by the same number of tokens")
        best = np.full(lengths[s], -1.0)
        start = 0
        for w, size in zip(ws, sizes, strict=True):
            at = np.arange(size)
            left = at if extra["cut_left"][w] else np.full(size, np.inf)
            right = size - 1 - at if extra["cut_right"][w] else np.full(size, np.inf)
            centrality = np.minimum(left, right)
            better = centrality > best[start : start + size]
            out[s, start + at[better]] = logits[w, at[better]]
            best[start + at[better]] = centrality[better]
            start += size - back
    return out


def _invisible(text: Any) -> str:
    """The message's word for a text that looks like text (in a shell, ``$'\\u200b'``; in a file)
    but has no visible character, so that "empty" is not taken for a wrong report; else ""."""
    return " (only invisible characters, such as U+200B)" if isinstance(text, str) and text.strip() else ""


def _is_series(value: Any) -> bool:
    # No pandas import for a plain list: a Series can only exist once pandas is imported.
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.Series)


def _as_list(values: Any) -> list[str] | None:
    return None if values is None else list(values)


def _series_inputs(texts: pd.Series, text_pairs: Any) -> tuple[list[str], list[str] | None]:
    """A Series' texts as a list, each checked by its index, and ``text_pairs`` lined up with them
    (one text for every row, or a Series paired by index).

    Raises:
        DataError: an empty or non-text row, named by its index, or pairs on other rows.
    """
    for index, text in texts.items():
        if not isinstance(text, str) or not has_visible_text(text):
            # has_visible_text, not str.strip: a filter on the stripped text keeps a zero-width one
            raise DataError(
                f"{texts.name or 'texts'}[{index!r}]: empty or not a string ({text!r}); drop or fill "
                "such rows first, e.g. df[df[column].map(tunelab.data.scripts.has_visible_text)]"
            )
    if isinstance(text_pairs, str):  # one second text for every row, not one per letter
        return list(texts), [text_pairs] * len(texts)
    if _is_series(text_pairs):
        if not text_pairs.index.equals(texts.index):
            same_rows = (
                texts.index.is_unique
                and text_pairs.index.is_unique
                and len(text_pairs) == len(texts)
                and set(text_pairs.index) == set(texts.index)
            )
            if not same_rows:
                raise DataError(
                    "text_pairs' index is not texts' index: give two columns of one DataFrame, or "
                    "reset both indexes (series.reset_index(drop=True))"
                )
            text_pairs = text_pairs.reindex(texts.index)  # paired by index, as results are
        return list(texts), list(text_pairs)
    return list(texts), _as_list(text_pairs)


def _refuse_containers(value: Any, what: str, *, paths: bool = True) -> None:
    """A DataFrame or a mapping iterates as its column names or keys, and a number or None not at
    all: each was predicted on its names (one silent wrong result) or failed with a TypeError.

    ``paths=False`` (``embed``, which reads no files) refuses a path too, and offers none.

    Raises:
        DataError: naming what to pass instead.
    """
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        raise DataError(f"{what}: a DataFrame; pass one column of it, e.g. df['text']")
    if isinstance(value, Mapping):
        raise DataError(f"{what}: a mapping; pass a text, a list of texts or a column")
    if value is None and what == "text_pairs":
        return
    if isinstance(value, os.PathLike) and not paths:
        raise DataError(f"{what}: a path ({value}); read its texts first, e.g. pd.read_csv(path)['text']")
    if isinstance(value, str | os.PathLike) or _is_series(value):
        return
    if value is None or isinstance(value, bytes) or not isinstance(value, Iterable):
        kinds = "a list of texts, a column or a Path" if paths else "a list of texts or a column"
        raise DataError(f"{what}: {type(value).__name__} is not text; pass a text, {kinds}")
