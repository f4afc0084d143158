"""A run's labels.json, read and checked against the rest of the run; run.json's threshold, checked.

labels.json is the one file that turns a model's output ids into names, and nothing tied it to
the run it sits in: a copy edited to two of three labels failed as "unexpected IndexError" (a
500 in a server), four names over three logits predicted silently, ``"task": "multi_label"`` on a
single-label run decoded with a sigmoid, and reordered names relabelled every prediction. Every
load of a finished run reads it here, where it must agree with what the run recorded itself:
run.json's ``task`` and ``num_labels``, config.json's ``data.task`` and, for a run that saved the
whole classifier, the ``id2label`` of ``weights/config.json``. Runs written before run.json had
those keys (or without a classifier config) are checked on what they have.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.data.labels import LabelMap
from tunelab.errors import RunError

if TYPE_CHECKING:
    from tunelab.config import RunConfig
    from tunelab.runs.folder import RunFolder

_FIX = "restore labels.json from a copy of the run, or train the run again"
# weights/config.json of a saved classifier (not the bare encoder of the old layout, whose
# id2label, if any, is the encoder's own and says nothing about the run's labels)
_CLASSIFIER_MODEL_TYPES = ("tunelab_pooled_classifier",)
_CLASSIFIER_ARCHITECTURES = ("ForSequenceClassification", "ForTokenClassification")
_LEGACY_HEAD_CONFIG = "head.json"


def read_run_labels(
    run: RunFolder, summary: Mapping[str, Any] | None = None, config: RunConfig | None = None
) -> LabelMap:
    """The run's labels.json, refused in one line when it does not belong to the run.

    Args:
        run: the finished run (or exported artifact, ensemble, zero-shot run) folder.
        summary: its run.json as read (``task`` and ``num_labels`` are compared when present).
        config: its config.json as read (``data.task`` is compared when given).

    Raises:
        DataError: labels.json is missing or not a label map (naming it).
        RunError: labels.json disagrees with run.json, config.json or the model's ``id2label``,
            naming labels.json, both values and the way out.
    """
    labels = LabelMap.load(run.labels_json)
    where = run.labels_json
    summary = summary or {}
    recorded_task = summary.get("task")
    if isinstance(recorded_task, str) and recorded_task != labels.task:
        raise RunError(
            f"{where}: task {labels.task!r}, but {run.run_json.name} says {recorded_task!r}; {_FIX}"
        )
    if config is not None and config.data.task != labels.task:
        raise RunError(
            f"{where}: task {labels.task!r}, but config.json says data.task={config.data.task!r}; {_FIX}"
        )
    count = summary.get("num_labels")
    if isinstance(count, int) and not isinstance(count, bool) and count != len(labels):
        raise RunError(f"{where}: {len(labels)} labels, but run.json says num_labels {count}; {_FIX}")
    model_names = _model_label_names(run)
    if model_names is not None and model_names != labels.names:
        raise RunError(f"{where}: {_difference(labels.names, model_names)}; {_FIX}")
    return labels


def _model_label_names(run: RunFolder) -> list[str] | None:
    """The label names in id order of the classifier in ``weights/`` (``id2label`` of its
    config.json), or None where there is none to compare with: an adapter run, an export to ONNX, an
    ensemble, a zero-shot run, the old layout, or a config.json that cannot be read (loading the
    weights says what is wrong with it)."""
    folder = Path(run.weights)
    path = folder / "config.json"
    if not path.is_file() or (folder / _LEGACY_HEAD_CONFIG).is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not _is_classifier(raw):
        return None
    id2label = raw.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        ordered = sorted((int(k), v) for k, v in id2label.items())
    except (TypeError, ValueError):
        return None
    if [i for i, _ in ordered] != list(range(len(ordered))):
        return None
    return [str(v) for _, v in ordered]


def _is_classifier(raw: dict[str, Any]) -> bool:
    architectures = raw.get("architectures") or []
    return raw.get("model_type") in _CLASSIFIER_MODEL_TYPES or (
        isinstance(architectures, list)
        and any(isinstance(a, str) and a.endswith(_CLASSIFIER_ARCHITECTURES) for a in architectures)
    )


def _difference(names: list[str], model: list[str]) -> str:
    """How labels.json's names differ from the model's, in a few words (a long list is not shown)."""
    source = "weights/config.json id2label"
    if len(names) != len(model):
        return f"{len(names)} labels, but the model has {len(model)} ({source})"
    i = next(i for i, (a, b) in enumerate(zip(names, model, strict=True)) if a != b)
    if sorted(names) == sorted(model):
        return f"labels reordered: id {i} is {names[i]!r}, but the model's is {model[i]!r} ({source})"
    return f"label id {i} is {names[i]!r}, but the model's is {model[i]!r} ({source})"


def check_threshold(summary: Mapping[str, Any], run: RunFolder) -> float | None:
    """run.json's multi-label decision ``threshold``: None, or a number strictly between 0 and 1.

    Used unchecked, ``"0.3"`` failed as "unexpected UFuncTypeError", and 5, -1, true or [0.3]
    decided every label silently wrong (none, all, or a broadcast).

    Raises:
        RunError: ``<run>/run.json: threshold <value> (use a number between 0 and 1, or null)``.
    """
    value = summary.get("threshold")
    if value is None:
        return None
    if not isinstance(value, Real) or isinstance(value, bool) or not 0 < value < 1:  # NaN fails too
        raise RunError(f"{run.run_json}: threshold {value!r} (use a number between 0 and 1, or null)")
    return float(value)
