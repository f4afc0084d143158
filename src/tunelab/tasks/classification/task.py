"""The classification task: every hook of ``tunelab.tasks.base.Task`` for single- and multi-label.

The work is done by the modules that already did it for classification (``tunelab.data.splits``,
``tunelab.evaluate.metrics``, ``tunelab.evaluate.report``, ``tunelab.train.head_init``); this
class picks the single- or multi-label variant of each, so no caller compares task names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.tasks.base import Task

if TYPE_CHECKING:
    import numpy as np
    import torch
    from pydantic import BaseModel
    from torch import nn

    from tunelab.config import DataConfig
    from tunelab.data.dataset import Dataset
    from tunelab.data.encoding import Encoded
    from tunelab.data.labels import LabelMap
    from tunelab.data.splits import Splits
    from tunelab.data.summary import SummaryView
    from tunelab.evaluate.mistakes import Mistakes
    from tunelab.evaluate.run_context import ReportContext

_METRICS = ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "loss")


class ClassificationTask(Task):
    """Sequence classification; ``multi``: a set of labels per text (sigmoid per label)."""

    family = "classification"
    augments_text = True  # a label (or label set) per text: EDA's word edits keep it
    labels_per_row = True  # rows with a label id (or ids) each; read_splits keeps data.labels' order
    headline_keys = ("loss", "accuracy", "macro_f1", "micro_f1", "weighted_f1", "threshold")
    metrics = _METRICS

    def __init__(self, *, multi: bool) -> None:
        self.multi = multi
        # Instance attributes: one class, two registered names.
        self.name = "multi_label" if multi else "single_label"  # type: ignore[misc]
        self.output = "labels" if multi else "label"  # type: ignore[misc]
        # data.shots draws N rows of each label: one label per row only (read_splits refuses too).
        self.samples_shots = not multi  # type: ignore[misc]
        self.description = (  # type: ignore[misc]
            "a set of labels per text (or text pair), e.g. topics; sigmoid per label, tuned threshold"
            if multi
            else "one label per text (or text pair), e.g. intent or sentiment; softmax"
        )

    def __repr__(self) -> str:
        return f"ClassificationTask({self.name})"

    # --- data -------------------------------------------------------------------------------

    def load_splits(self, data: DataConfig) -> Splits:
        from tunelab.data.splits import read_splits

        return read_splits(data, multi_label=self.multi)

    def read_labelled(
        self, path: str | Path, data: DataConfig, labels: LabelMap, *, field: str | None
    ) -> Dataset:
        from tunelab.data.labelled import read_labelled_table

        kind = "many" if self.multi else "one"
        return read_labelled_table(path, data, labels, label_kind=kind, field=field)

    def summary_view(self, dataset: Dataset, labels: LabelMap) -> SummaryView:
        """Rows keyed by text (and pair); a row counts towards its label, or each of its labels."""
        view = super().summary_view(dataset, labels)
        ids = dataset.labels or []
        view.labels = [[labels.names[i] for i in row] if self.multi else [labels.names[row]] for row in ids]  # type: ignore[union-attr]
        if self.multi:
            view.facts = {
                "rows without a label": sum(not row for row in view.labels),
                "labels given": sum(map(len, view.labels)),
            }
        return view

    def encode(self, tokenizer: Any, dataset: Any, *, max_length: int, stride: int = 0) -> Encoded:
        # One example per text, truncated at max_length: ``stride`` does not apply.
        from tunelab.data.encoding import encode_texts

        return encode_texts(
            tokenizer, dataset.texts, dataset.text_pairs, max_length=max_length, labels=dataset.labels
        )

    def encode_texts(
        self,
        tokenizer: Any,
        texts: list[str],
        text_pairs: list[str] | None,
        *,
        max_length: int,
        stride: int = 0,
    ) -> Encoded:
        from tunelab.data.encoding import encode_texts

        return encode_texts(tokenizer, texts, text_pairs, max_length=max_length)

    def batch_labels(self, enc: Encoded, indices: list[int], *, width: int, num_labels: int) -> torch.Tensor:
        """(B,) int64 label ids, or (B, num_labels) float multi-hot; soft targets' rows as they are."""
        import torch

        if isinstance(enc.labels, torch.Tensor):  # soft targets (N, num_labels), e.g. a teacher's
            return enc.labels[torch.as_tensor(indices)]
        assert enc.labels is not None
        if self.multi:
            hot = torch.zeros((len(indices), num_labels), dtype=torch.float32)
            for row, i in enumerate(indices):
                hot[row, enc.labels[i]] = 1.0
            return hot
        return torch.tensor([enc.labels[i] for i in indices], dtype=torch.long)

    # --- model and loss ---------------------------------------------------------------------

    @property
    def problem_type(self) -> str:
        """transformers' name for it: what ``from_pretrained`` users get as the model's loss."""
        return "multi_label_classification" if self.multi else "single_label_classification"

    def build_model(self, path: Path, labels: LabelMap, *, pooling: str, seed: int | None) -> nn.Module:
        from tunelab.models import build_classifier

        return build_classifier(path, labels.names, self.problem_type, pooling=pooling, seed=seed)

    def model_skeleton(self, path: Path, *, pooling: str) -> nn.Module:
        """``build_model``'s classifier from ``path``'s config alone (see ``Task.model_skeleton``)."""
        from transformers import AutoConfig

        from tunelab.models.classifier import _new_classifier, detect_pooling

        config = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
        pooling = detect_pooling(path) if pooling == "auto" else pooling
        return _new_classifier(config, ["a", "b"], self.problem_type, pooling)

    def load_model(self, folder: Path) -> nn.Module:
        from tunelab.models.classifier import load_classifier

        # A folder of the old layout (encoder + head.json) does not say; the task does.
        return load_classifier(folder, problem_type=self.problem_type)

    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor | None,
        *,
        smoothing: float = 0.0,
    ) -> torch.Tensor:
        """Cross-entropy (optionally class-weighted) or, multi-label, per-label binary cross-entropy.

        ``labels`` may be soft targets, (B, num_labels) probabilities: both losses take them as they
        are, which is how distillation trains a student on a teacher's outputs with the same loop.
        ``smoothing`` e: torch's own label smoothing for the cross-entropy; multi-label, each
        label's target moves e/2 towards 1/2 (1 - e/2 and e/2), the binary form of the same rule.
        """
        import torch.nn.functional as F

        if self.multi:
            targets = labels * (1.0 - smoothing) + smoothing / 2 if smoothing else labels
            return F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=weights)
        return F.cross_entropy(logits.float(), labels, weight=weights, label_smoothing=smoothing)

    def class_weights(self, dataset: Any, num_labels: int) -> torch.Tensor | None:
        """Inverse-frequency weights ("balanced", as scikit-learn defines them) for imbalanced data.

        Multi-label: BCE's ``pos_weight``, negatives / positives per label; 1 (unweighted) for a
        label in every row or in none, which has nothing to balance: a label in every row had a
        weight of 0, so its positive term vanished, and with no negatives it never learned.
        """
        import torch

        labels = dataset.labels or []
        n = len(labels)
        if self.multi:
            counts = Counter(i for row in labels for i in row)
            return torch.tensor(
                [(n - c) / c if 0 < (c := counts.get(i, 0)) < n else 1.0 for i in range(num_labels)]
            )
        counts = Counter(labels)
        return torch.tensor(
            [n / (num_labels * max(counts.get(i, 0), 1)) for i in range(num_labels)], dtype=torch.float32
        )

    def probe_head(self, model: nn.Module, enc: Encoded, *, num_labels: int, seed: int) -> float:
        from tunelab.train.head_init import probe_head

        return probe_head(model, enc, multi_label=self.multi, num_labels=num_labels, seed=seed)

    def soft_targets(self, logits: torch.Tensor) -> torch.Tensor:
        """The teacher's predicted distribution: per-label sigmoid, or softmax over the labels."""
        import torch

        return torch.sigmoid(logits) if self.multi else torch.softmax(logits, dim=-1)

    def logits_from_probabilities(self, probs: np.ndarray) -> np.ndarray:
        """``log p`` (softmax), or multi-label the log-odds ``log p - log(1 - p)`` (sigmoid)."""
        import numpy as np

        p = np.clip(probs, 1e-7, 1 - 1e-7) if self.multi else np.clip(probs, 1e-12, 1.0)
        return np.log(p) - np.log1p(-p) if self.multi else np.log(p)

    # --- evaluation -------------------------------------------------------------------------

    def score(
        self, logits: np.ndarray, enc: Encoded, labels: LabelMap, *, threshold: float | None = None
    ) -> tuple[dict[str, Any], float | None]:
        """Metrics of ``logits`` (N, L); multi-label tunes the threshold here when given None."""
        from tunelab.tasks.classification.scoring import score

        metrics, used = score(
            logits, list(enc.labels or []), labels.names, multi=self.multi, threshold=threshold
        )
        # metrics.json has always named the task first.
        return {"task": self.name, **metrics}, used

    def tunes_threshold(self) -> bool:
        return self.multi

    def parity_metric(self, run_metric: str) -> str:
        """The run's own selection metric, except loss (not a percentage) and multi-label
        exact-match accuracy (too harsh a measure of an export): accuracy or micro-F1 then."""
        if run_metric == "loss" or (self.multi and run_metric == "accuracy"):
            return "micro_f1" if self.multi else "accuracy"
        return run_metric

    def agreement(
        self, before: np.ndarray, after: np.ndarray, *, threshold: float | None, enc: Encoded | None = None
    ) -> float:
        from tunelab.tasks.classification.scoring import agreement

        return agreement(before, after, multi=self.multi, threshold=threshold)

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
        from tunelab.evaluate.report import write_report

        return write_report(
            out_dir,
            metrics,
            label_names=labels.names,
            history=history,
            title=title,
            meta=meta,
            split=split,
            multi_label=self.multi,
            context=context,
        )

    def mistakes(
        self, logits: np.ndarray, enc: Encoded, dataset: Any, labels: LabelMap, *, threshold: float | None
    ) -> Mistakes:
        """Rows whose label (or set of labels) is wrong, the most confident first."""
        from tunelab.tasks.classification.scoring import mistakes

        return mistakes(
            logits,
            list(enc.labels or []),
            labels.names,
            dataset.texts,
            dataset.text_pairs,
            multi=self.multi,
            threshold=0.5 if threshold is None else threshold,
        )

    # --- prediction -------------------------------------------------------------------------

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
        from tunelab.tasks.classification.scoring import decode

        cut = 0.5 if threshold is None else threshold
        return decode(logits, labels.names, multi=self.multi, threshold=cut, top_k=top_k)

    @property
    def result_schema(self) -> type[BaseModel]:
        from tunelab.serve.schemas import ClassificationResult

        return ClassificationResult
