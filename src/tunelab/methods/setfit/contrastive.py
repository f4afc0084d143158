"""SetFit's first stage: contrastive fine-tuning of the encoder on pairs of training rows.

The pooled vector the classification head reads (``tunelab.models.classifier.pooled_features``)
is the sentence embedding: pairs of the same label are pulled to cosine similarity 1, pairs of
different labels pushed to 0, with sentence-transformers' ``CosineSimilarityLoss`` (SetFit's
default loss); or, with ``loss: mnrl`` / ``triplet``, batches of labels whose other labels are
the negatives (``MultipleNegativesRankingLoss``, ``BatchAllTripletLoss``). The loop is written
here, not taken from ``SentenceTransformerTrainer``, because the model is the run's own classifier
(so the tuned encoder is saved, exported and served like any run) and not a
``SentenceTransformer``; the losses only need the embeddings.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from typing import Any

import torch
from torch import nn

from tunelab.data.encoding import Encoded, collate
from tunelab.methods.setfit.pairs import Pair, draw_label_batches, draw_pairs
from tunelab.models.classifier import pooled_features

logger = logging.getLogger(__name__)

#: Set on a model whose encoder ``contrastive_finetune`` tuned (not when no pair could be drawn):
#: the method's ``trained_parameters`` counts every weight of it, not only what the loop trains.
TUNED_FLAG = "_tunelab_setfit_tuned"


def contrastive_finetune(model: nn.Module, train: Encoded, options: Any, *, seed: int) -> list[str]:
    """Fine-tune ``model``'s encoder in place on pairs of ``train``'s rows; notes for the run log.

    Args:
        model: the run's classifier (encoder + head); only what feeds the head is trained here.
        train: the encoded training rows with one label id each.
        options: the method's ``SetFitConfig`` (pairs per row, cap, epochs, learning rate, batch,
            loss).
        seed: pair draw, batch order and dropout.
    """
    from transformers import get_linear_schedule_with_warmup

    labels = [int(label) for label in train.labels or []]
    pairs, drawn = draw_pairs(
        labels,
        positives=options.positives,
        negatives=options.negatives,
        max_pairs=options.max_pairs,
        seed=seed,
    )
    if not pairs:
        return ["setfit: no pairs could be made (every label has one row); contrastive stage skipped"]
    # Every loss gets the same budget: the steps the pairs take, 2 x batch_size texts a step.
    total = max(1, math.ceil(options.epochs * math.ceil(len(pairs) / options.batch_size)))
    batches = _batches(labels, pairs, options, total, seed)
    if not batches:
        return [
            f"setfit: loss {options.loss} needs two labels with two rows or more; contrastive stage skipped"
        ]
    torch.manual_seed(seed)
    loss_fn = _loss(options.loss, model)
    params = [p for name, p in model.named_parameters() if not name.startswith("classifier.")]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=options.learning_rate, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * total), total)
    model.train()
    started, running, window = time.perf_counter(), 0.0, 0
    for step, (rows, target) in enumerate(batches, start=1):
        # One forward for every text of the step: (N, T) -> pooled (N, H).
        pooled = pooled_features(model, **collate(train, rows))
        if options.loss == "cosine":  # rows: the a sides, then the b sides
            half = len(rows) // 2
            loss = loss_fn.compute_loss_from_embeddings([pooled[:half], pooled[half:]], target)
        elif options.loss == "mnrl":  # rows: (anchor, positive) of each label in turn
            loss = loss_fn.compute_loss_from_embeddings([pooled[0::2], pooled[1::2]], target)
        else:
            loss = loss_fn.compute_loss_from_embeddings([pooled], target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        running, window = running + float(loss.detach()), window + 1
        if step % 50 == 0 or step == total:
            logger.info("setfit contrastive step %d/%d: loss %.4f", step, total, running / window)
            running, window = 0.0, 0
    setattr(model, TUNED_FLAG, True)
    seconds = time.perf_counter() - started
    if options.loss == "cosine":
        return [pairs_note(pairs, drawn, options, len(batches), seconds)]
    return _in_batch_notes(labels, options, batches, len(pairs), seconds)


#: Rows of one label in a batch of the in-batch losses: an anchor and its positive for
#: MultipleNegativesRankingLoss; four for BatchAllTripletLoss, so each anchor has three positives.
_PER_LABEL = {"cosine": 2, "mnrl": 2, "triplet": 4}


def _in_batch_notes(
    labels: list[int], options: Any, batches: list[tuple[list[int], Any]], pairs: int, seconds: float
) -> list[str]:
    """The run's notes on an in-batch loss's stage, and on the labels it could not use: one row
    cannot be its own positive, so such a label is in no batch (the cosine loss still pairs it as
    a negative)."""
    counts = Counter(labels)
    per_label = _PER_LABEL[options.loss]
    notes = [
        f"setfit: contrastive stage with loss {options.loss} on label batches of "
        f"{len({labels[r] for r in batches[0][0]})} labels x up to {per_label} rows, {len(batches)} steps "
        f"(the steps of {pairs} pairs) in {seconds:.0f} s"
    ]
    single = sum(1 for n in counts.values() if n == 1)
    if single:
        notes.append(
            f"setfit: {single} label(s) with a single training row take no part in loss {options.loss}"
        )
    return notes


def _batches(
    labels: list[int], pairs: list[Pair], options: Any, total: int, seed: int
) -> list[tuple[list[int], torch.Tensor | None]]:
    """Each step's rows and target: pairs in a seeded order, epoch after epoch, for ``cosine``;
    label batches (``pairs.draw_label_batches``) for the losses that take negatives in the batch."""
    size = options.batch_size
    if options.loss != "cosine":
        per_label = _PER_LABEL[options.loss]
        drawn = draw_label_batches(labels, size=2 * size, per_label=per_label, steps=total, seed=seed)
        return [(rows, torch.tensor([labels[r] for r in rows])) for rows in drawn]
    generator = torch.Generator().manual_seed(seed)
    steps: list[tuple[list[int], torch.Tensor | None]] = []
    while len(steps) < total:
        order = torch.randperm(len(pairs), generator=generator).tolist()
        for start in range(0, len(order), size):
            if len(steps) == total:
                break
            chunk = [pairs[i] for i in order[start : start + size]]
            rows = [p.a for p in chunk] + [p.b for p in chunk]
            steps.append((rows, torch.tensor([p.similar for p in chunk])))
    return steps


def _loss(name: str, model: nn.Module) -> nn.Module:
    """sentence-transformers' loss of that name; only ``compute_loss_from_embeddings`` is called,
    so the run's classifier stands in for the SentenceTransformer the losses are built around."""
    from sentence_transformers import losses

    if name == "mnrl":
        return losses.MultipleNegativesRankingLoss(model)
    if name == "triplet":
        return losses.BatchAllTripletLoss(model)
    return losses.CosineSimilarityLoss(model)


def pairs_note(pairs: list[Pair], drawn: int, options: Any, steps: int, seconds: float) -> str:
    """The run's note on the contrastive stage; the cap is named only when it cut pairs (``drawn``
    more than kept), since max_pairs is set by default and "capped at 20000" on 192 pairs misled."""
    positive = sum(p.similar == 1.0 for p in pairs)
    capped = f", capped at {len(pairs)} (of {drawn})" if drawn > len(pairs) else ""
    return (
        f"setfit: contrastive stage on {len(pairs)} pairs ({positive} positive, {len(pairs) - positive} "
        f"negative; {options.positives}+{options.negatives} per row{capped}), "
        f"{steps} steps in {seconds:.0f} s"
    )
