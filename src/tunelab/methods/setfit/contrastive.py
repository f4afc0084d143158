"""SetFit's first stage: contrastive fine-tuning of the encoder on pairs of training rows.

The pooled vector the classification head reads (``tunelab.models.classifier.pooled_features``)
is the sentence embedding: pairs of the same label are pulled to cosine similarity 1, pairs of
different labels pushed to 0, with sentence-transformers' ``CosineSimilarityLoss`` (SetFit's
default loss). The loop is written here, not taken from ``SentenceTransformerTrainer``, because
the model is the run's own classifier (so the tuned encoder is saved, exported and served like
any run) and not a ``SentenceTransformer``; the loss only needs the two embeddings.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
from torch import nn

from tunelab.data.encoding import Encoded, collate
from tunelab.methods.setfit.pairs import Pair, draw_pairs
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
        options: the method's ``SetFitConfig`` (pairs per row, cap, epochs, learning rate, batch).
        seed: pair draw, batch order and dropout.
    """
    from sentence_transformers.losses import CosineSimilarityLoss
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
    torch.manual_seed(seed)
    loss_fn = CosineSimilarityLoss(model)
    params = [p for name, p in model.named_parameters() if not name.startswith("classifier.")]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=options.learning_rate, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(pairs) / options.batch_size)
    total = max(1, math.ceil(options.epochs * steps_per_epoch))
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * total), total)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    started, step, running, window = time.perf_counter(), 0, 0.0, 0
    while step < total:
        order = torch.randperm(len(pairs), generator=generator).tolist()
        for start in range(0, len(order), options.batch_size):
            if step >= total:
                break
            chunk = [pairs[i] for i in order[start : start + options.batch_size]]
            # Both sides in one forward: (2B, T) -> pooled (2B, H) -> u, v (B, H) each.
            batch = collate(train, [p.a for p in chunk] + [p.b for p in chunk])
            pooled = pooled_features(model, **batch)
            u, v = pooled[: len(chunk)], pooled[len(chunk) :]
            target = torch.tensor([p.similar for p in chunk])
            loss = loss_fn.compute_loss_from_embeddings([u, v], target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running, window, step = running + float(loss.detach()), window + 1, step + 1
            if step % 50 == 0 or step == total:
                logger.info("setfit contrastive step %d/%d: loss %.4f", step, total, running / window)
                running, window = 0.0, 0
    setattr(model, TUNED_FLAG, True)
    return [pairs_note(pairs, drawn, options, step, time.perf_counter() - started)]


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
