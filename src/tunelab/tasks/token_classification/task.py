"""The ``token_classification`` task (named-entity recognition) behind the ``Task`` hooks.

The model is the stock ``AutoModelForTokenClassification`` (a linear head on every token), so a
run's weights load in plain transformers and export like any Hugging Face token classifier. Data:
see ``data`` (formats, label map, splits); tokens and windows: ``encoding``; metrics: ``metrics``;
predictions: ``entities``; the report: ``report``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tunelab.data.encoding import Encoded
from tunelab.data.labels import LabelMap
from tunelab.errors import ModelNotFoundError
from tunelab.evaluate.losses import cross_entropy
from tunelab.tasks.base import Task
from tunelab.tasks.token_classification import data as ner_data
from tunelab.tasks.token_classification.encoding import IGNORE, encode_words, prefix_space, split_words
from tunelab.tasks.token_classification.entities import decode_entities, word_tags
from tunelab.tasks.token_classification.metrics import entity_scores, error_analysis, token_accuracy

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel
    from torch import nn

    from tunelab.config import DataConfig
    from tunelab.data.splits import Splits
    from tunelab.data.summary import SummaryTerms, SummaryView
    from tunelab.evaluate.mistakes import Mistakes
    from tunelab.evaluate.run_context import ReportContext

DEFAULT_STRIDE = 32  # ModelConfig.stride's default


class TokenClassificationTask(Task):
    """NER: one IOB2 tag per word, entities scored with seqeval in strict mode."""

    name: ClassVar[str] = ner_data.TASK
    family: ClassVar[str] = "token_classification"
    description: ClassVar[str] = "named-entity recognition: a BIO tag per word (CoNLL or JSONL data)"
    output: ClassVar[str] = "entities"
    uses_stride: ClassVar[bool] = True
    headline_keys: ClassVar[tuple[str, ...]] = (
        "loss",
        "entity_f1",
        "entity_precision",
        "entity_recall",
        "macro_f1",
        "token_accuracy",
    )
    metrics: ClassVar[tuple[str, ...]] = ("entity_f1", "macro_f1", "token_accuracy", "loss")

    # --- data -------------------------------------------------------------------------------

    def load_splits(self, data: DataConfig) -> Splits:
        return ner_data.load_splits(data)

    def read_labelled(
        self, path: str | Path, data: DataConfig, labels: LabelMap, *, field: str | None
    ) -> ner_data.NerDataset:
        return ner_data.read_labelled(path, data, labels, field=field)

    def summary_view(self, dataset: ner_data.NerDataset, labels: LabelMap) -> SummaryView:
        """Sentences keyed by their words; a sentence counts towards the type of each entity in it."""
        from tunelab.data.summary import SummaryView

        texts = dataset.texts
        types = [[tag[2:] for tag in s.tags if tag.startswith("B-")] for s in dataset.sentences]
        words = sum(len(s.tokens) for s in dataset.sentences)
        facts = {"words": words, "entity mentions": sum(map(len, types))}
        keys = [" ".join(s.tokens) for s in dataset.sentences]
        words_of = [list(s.tokens) for s in dataset.sentences]  # what encode() tokenizes, word by word
        return SummaryView(keys=keys, labels=types, texts=texts, facts=facts, words=words_of)

    def frame_columns(self, data: DataConfig) -> list[tuple[str, str]]:
        """None: an NER frame has one of two layouts, ``tokens`` + ``tags`` or ``text`` (+ ``spans``),
        which one list of required columns cannot say. Asking for ``text`` refused a tokens + tags
        frame, and the advice to rename a column to ``text`` then failed in the span reader. The
        frame's JSON lines are checked by the readers, which name both layouts (``read_jsonl_tokens``).
        """
        return []

    def summary_terms(self) -> SummaryTerms:
        from tunelab.data.summary import SummaryTerms

        # A long sentence is cut into windows sharing model.stride tokens, not truncated.
        return SummaryTerms(example="sentence", label_count="entity mentions", long="split into windows")

    def prepare_tokenizer(self, tokenizer: Any) -> dict[str, Any]:
        """A new run's tokenizer reads each given word after a space (``encoding.prefix_space``):
        ``{"word_prefix_space": True}`` where that changed it (byte-level BPE such as RoBERTa's,
        a sentencepiece that never prepends ``▁``), else ``{}`` (WordPiece, sentencepiece as most are).

        The trainer calls it once, when a run begins, and records the result in run.json; the run's
        saved ``tokenizer/`` keeps the setting. ``encode``/``encode_texts`` read a tokenizer as they
        are given it, so a run trained before this choice predicts and resumes as it was trained.
        """
        return {"word_prefix_space": True} if prefix_space(tokenizer) else {}

    def encode(
        self, tokenizer: Any, dataset: ner_data.NerDataset, *, max_length: int, stride: int = DEFAULT_STRIDE
    ) -> Encoded:
        """Windows of the dataset's sentences, each word labelled on its first sub-token.

        ``extra`` also keeps, per window, its sentence's gold tags and words (for ``score``).
        """
        words = [s.tokens for s in dataset.sentences]
        return encode_words(
            tokenizer,
            words,
            max_length=max_length,
            stride=stride,
            tags=dataset.labels,
            extra={"gold": [s.tags for s in dataset.sentences], "tokens": words},
        )

    def encode_texts(
        self,
        tokenizer: Any,
        texts: list[str],
        text_pairs: list[str] | None,
        *,
        max_length: int,
        stride: int = DEFAULT_STRIDE,
    ) -> Encoded:
        """Windows of raw texts split into words (see ``encoding.split_words``), with character offsets."""
        if text_pairs is not None:
            raise ValueError("token classification takes single texts, not text pairs")
        split = [split_words(text) for text in texts]
        return encode_words(
            tokenizer,
            [words for words, _ in split],
            max_length=max_length,
            stride=stride,
            extra={"offsets": [offsets for _, offsets in split]},
        )

    def batch_labels(self, enc: Encoded, indices: list[int], *, width: int, num_labels: int) -> torch.Tensor:
        """(B, width) int64 tag ids, -100 where not labelled; or (B, width, L) soft targets.

        Soft targets (a teacher's probabilities, ``enc.labels`` (N, T, L)) are zeroed where no word
        is labelled, so that ``loss`` skips those positions as it skips -100.
        """
        import torch  # lazy: validating a run config loads this task and must not import torch

        if isinstance(enc.labels, torch.Tensor):
            soft = torch.zeros((len(indices), width, enc.labels.shape[-1]), dtype=enc.labels.dtype)
            words = (enc.extra or {})["words"]
            for row, i in enumerate(indices):
                keep = [j for j, w in enumerate(words[i][:width]) if w >= 0 and j < enc.labels.shape[1]]
                soft[row, keep] = enc.labels[i, keep]
            return soft
        assert enc.labels is not None, "batch_labels needs labelled windows"
        out = torch.full((len(indices), width), IGNORE, dtype=torch.long)
        for row, i in enumerate(indices):
            seq = enc.labels[i][:width]
            out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return out

    def entity_types(self, labels: LabelMap) -> list[str]:
        """The types behind the BIO tags: ``B-PER``, ``I-PER`` -> ``PER``."""
        return sorted({name.split("-", 1)[1] for name in labels.names if name != "O" and "-" in name})

    # --- model and loss ---------------------------------------------------------------------

    def build_model(self, path: Path, labels: LabelMap, *, pooling: str, seed: int | None) -> nn.Module:
        """``AutoModelForTokenClassification`` with the encoder at ``path`` and a fresh head (seeded).

        ``pooling`` does not apply: every token gets its own prediction.
        """
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        model, info = _from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels.names)),
            label2id={name: i for i, name in enumerate(labels.names)},
            # a folder that is another task's classifier (an NLI or sentiment model): its head did
            # not fit ("unexpected RuntimeError: ... ignore_mismatched_sizes"), or was kept as is
            ignore_mismatched_sizes=True,
            output_loading_info=True,
        )
        head = {k for k in model.state_dict() if k.startswith("classifier.")}
        mismatched = {m[0] for m in info.get("mismatched_keys") or []}
        body = sorted(mismatched - head)
        if body:  # ignore_mismatched_sizes is for the head: an encoder that does not fit is refused
            raise ModelNotFoundError(
                f"model folder {path}: weight {body[0]} does not fit config.json; "
                "give a Hugging Face folder with config.json and model.safetensors"
            )
        loaded = head - set(info.get("missing_keys") or []) - mismatched
        if loaded:  # the other task's head, same size: a fresh one, as any base gets
            if seed is not None:
                torch.manual_seed(seed)
            # by hand: transformers 5's _init_weights skips a module it marked as loaded
            with torch.no_grad():
                model.classifier.weight.normal_(0.0, getattr(model.config, "initializer_range", 0.02))
                model.classifier.bias.zero_()
        return model

    def model_skeleton(self, path: Path, *, pooling: str) -> nn.Module:
        """``build_model``'s model from ``path``'s config alone (see ``Task.model_skeleton``)."""
        from transformers import AutoConfig, AutoModelForTokenClassification

        config = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
        return AutoModelForTokenClassification.from_config(config)

    def load_model(self, folder: Path) -> nn.Module:
        return _from_pretrained(folder)

    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor | None,
        *,
        smoothing: float = 0.0,
    ) -> torch.Tensor:
        """Cross-entropy over the labelled positions; logits (B, T, L), labels (B, T) or soft (B, T, L).

        ``smoothing``: torch's label smoothing, over the labelled positions only (soft targets too).
        """
        import torch
        from torch import nn

        if labels.is_floating_point():  # soft targets: all-zero rows are positions to skip
            mask = labels.sum(dim=-1) > 0  # (B, T)
            if smoothing:
                labels = labels * (1.0 - smoothing) + smoothing / labels.shape[-1]
            per_token = -(labels * torch.log_softmax(logits.float(), dim=-1)).sum(dim=-1)  # (B, T)
            return (per_token * mask).sum() / mask.sum().clamp(min=1)
        if not bool((labels != IGNORE).any()):
            return logits.sum() * 0.0  # nothing labelled in the batch: no gradient, and not NaN
        return nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            weight=weights,
            ignore_index=IGNORE,
            label_smoothing=smoothing,
        )

    def class_weights(self, dataset: ner_data.NerDataset, num_labels: int) -> torch.Tensor | None:
        """Balanced tag weights, ``words / (tags * count)`` (scikit-learn's "balanced"); 1 for an unseen tag.

        ``O`` usually covers most words, so this up-weights entity tags; it tends to raise recall
        and lower precision.
        """
        import torch

        counts = np.bincount([t for tags in dataset.labels for t in tags], minlength=num_labels).astype(float)
        weights = np.ones(num_labels)
        seen = counts > 0
        weights[seen] = counts.sum() / (seen.sum() * counts[seen])
        return torch.tensor(weights, dtype=torch.float32)

    def soft_targets(self, logits: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.softmax(logits.float(), dim=-1)

    # --- evaluation -------------------------------------------------------------------------

    def score(
        self, logits: np.ndarray, enc: Encoded, labels: LabelMap, *, threshold: float | None = None
    ) -> tuple[dict[str, Any], float | None]:
        """Entity metrics per type, micro and macro, token accuracy, loss, and an error analysis.

        ``loss`` is the training loss: mean cross-entropy over every labelled sub-token of every
        window. The rest is word-level, each word predicted once (see ``encoding.merge_windows``).
        """
        gold, words, pred, _ = _sentences(logits, enc, labels.names)
        metrics: dict[str, Any] = {
            "task": self.name,
            "n": len(gold),
            "n_words": sum(len(g) for g in gold),
            "loss": _loss(logits, enc),
            **entity_scores(gold, pred),
            "token_accuracy": token_accuracy(gold, pred),
            "errors": error_analysis(gold, pred, words),
        }
        return metrics, None

    def parity_metric(self, run_metric: str) -> str:
        """The run's metric where it is a score of this task (loss is no percentage), else entity F1."""
        return run_metric if run_metric in self.metrics and run_metric != "loss" else "entity_f1"

    def agreement(
        self, before: np.ndarray, after: np.ndarray, *, threshold: float | None, enc: Encoded | None = None
    ) -> float:
        """The share of sentences whose argmax tag at every position is the same before and after.

        Without ``enc`` every position counts (padding is zeros in both, so it agrees), including
        special tokens and later sub-tokens whose predictions nothing reads, and each window is
        counted as a sentence; with ``enc`` only the labelled positions (a word's first sub-token)
        do, which is what decoding reads, and a sentence agrees when all its windows do: the parity
        report says "of rows", and its row count is texts, so one changed tag in a text of two
        windows read as half a text agreeing.
        """
        if len(before) == 0:
            return 1.0
        width = max(before.shape[1], after.shape[1])
        a = np.pad(before, ((0, 0), (0, width - before.shape[1]), (0, 0))).argmax(axis=-1)
        b = np.pad(after, ((0, 0), (0, width - after.shape[1]), (0, 0))).argmax(axis=-1)
        same = a == b  # (N, T)
        if enc is not None and enc.extra is not None:
            mask = np.zeros_like(same)
            for i, words in enumerate(enc.extra["words"]):
                mask[i, : len(words)] = np.asarray(words) >= 0
            same |= ~mask
            samples = np.asarray(enc.extra["sample"])
            differs = np.bincount(samples, weights=~same.all(axis=1))  # per sentence: its windows that differ
            return float((differs[np.unique(samples)] == 0).mean())
        return float(same.all(axis=1).mean())

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
        from tunelab.tasks.token_classification.report import write_report

        return write_report(
            out_dir, metrics, history=history, title=title, meta=meta, split=split, context=context
        )

    def mistakes(
        self, logits: np.ndarray, enc: Encoded, dataset: Any, labels: LabelMap, *, threshold: float | None
    ) -> Mistakes:
        """Sentences with a wrong entity, surest first (``mistakes.sentence_mistakes``)."""
        from tunelab.tasks.token_classification.mistakes import sentence_mistakes

        gold, words, pred, probs = _sentences(logits, enc, labels.names)
        return sentence_mistakes(gold, pred, words, probs)

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
        """Entities per text (``threshold`` and ``top_k`` do not apply: every word gets its best tag)."""
        return decode_entities(logits, enc, list(texts), labels.names)

    @property
    def result_schema(self) -> type[BaseModel]:
        from tunelab.serve.schemas import EntityResult

        return EntityResult


def _from_pretrained(path: Path, **config: Any) -> nn.Module:
    from transformers import AutoModelForTokenClassification

    from tunelab.models.classifier import load_failure
    from tunelab.quiet import no_progress_bars, quiet

    # Unused pooler weights and the newly initialised head are expected: quiet, for this thread only.
    try:
        with quiet(), no_progress_bars():
            # trust_remote_code=False: a config.json naming code of its own (auto_map) is refused
            # without transformers' "run the custom code?" prompt, never imported
            return AutoModelForTokenClassification.from_pretrained(
                str(path), use_safetensors=True, trust_remote_code=False, **config
            )
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: weights that do not fit
        reason = load_failure(exc)
        raise ModelNotFoundError(
            f"model folder {path}: cannot load a token classifier ({reason}); "
            "give a Hugging Face folder with config.json and model.safetensors"
        ) from None


def _sentences(
    logits: np.ndarray, enc: Encoded, names: list[str]
) -> tuple[list[list[str]], list[list[str]], list[list[str]], list[np.ndarray]]:
    """Per sentence: gold tags, words, predicted tags of every word, and each word's probability.

    A word without sub-tokens has no probability of its own; it gets 1.0 (``_full_sequence``
    gives it the tag around it, no decision of the model's).
    """
    extra = enc.extra or {}
    gold_by_sample: dict[int, tuple[list[str], list[str]]] = {}
    for s, gold, words in zip(extra["sample"], extra["gold"], extra["tokens"], strict=True):
        gold_by_sample.setdefault(s, (gold, words))
    gold = [gold_by_sample[s][0] for s in sorted(gold_by_sample)]
    words = [gold_by_sample[s][1] for s in sorted(gold_by_sample)]
    pred, probs = [], []
    for g, (tags, scores, kept) in zip(gold, word_tags(logits, enc, names), strict=True):
        pred.append(_full_sequence(tags, kept, len(g)))
        full = np.ones(len(g))
        full[kept] = scores
        probs.append(full)
    return gold, words, pred, probs


def _full_sequence(tags: list[str], kept: list[int], size: int) -> list[str]:
    """Tags of every word: a word without sub-tokens continues the entity around it, else is ``O``."""
    full = ["O"] * size
    for tag, i in zip(tags, kept, strict=True):
        full[i] = tag
    have = set(kept)
    if len(have) < size:
        for i in range(size - 2, -1, -1):  # right to left: a gap takes the I- of the word after it
            if i not in have and full[i + 1].startswith("I-"):
                full[i] = full[i + 1]
    return full


def _loss(logits: np.ndarray, enc: Encoded) -> float:
    """Mean cross-entropy over the labelled positions of every window."""
    if not isinstance(enc.labels, list):
        return float("nan")
    total, count = 0.0, 0
    for i, row in enumerate(enc.labels):
        ids = np.asarray(row)
        pos = np.flatnonzero(ids != IGNORE)
        if pos.size:
            total += float(cross_entropy(logits[i, pos], ids[pos]).sum())  # exact (scoring)
            count += pos.size
    return total / count if count else 0.0
