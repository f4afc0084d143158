"""SetFit (Tunstall et al., 2022): contrastive fine-tuning of the encoder, then a logistic-regression head.

The recipe, in the three places the training run already has for it:

1. ``before_training`` (this method's hook): the encoder is fine-tuned on pairs of training rows
   with sentence-transformers' ``CosineSimilarityLoss`` (``contrastive.py``; ``loss`` picks an
   in-batch one instead). Pairs are drawn a
   fixed number per row (``positives`` + ``negatives``, capped at ``max_pairs``), so their
   number grows linearly with the rows and not with labels squared (``pairs.py``).
2. ``train.head_init: probe`` (the default) then fits the head as a logistic regression on the
   tuned encoder's embeddings, as SetFit does (``tunelab.train.head_init``).
3. The ordinary loop then fine-tunes the whole model from there with the task's loss (SetFit's
   end-to-end option, ``end_to_end: true``, the default here), or only refines that linear head
   (``end_to_end: false``, SetFit's own default). The head starts at the probe's optimum, so a
   short loop (``train.epochs=1``) does little either way; on BANKING77 at 8 per intent the
   head-only recipe was the better of the two tried on dev (``benchmarks/fewshot.py``).

The run stores the whole model, like ``full``: a plain ``save_pretrained`` classifier that
``tunelab eval``, ``predict``, ``export`` and ``serve`` handle like any other run.

Why not the ``setfit`` library (1.2.0 installs beside our packages without changing any): its
model saves as a SentenceTransformer folder plus a pickled scikit-learn head (``model_head.pkl``),
which is neither a Hugging Face classifier that loads without tunelab nor something the ONNX
export, the parity checks or the server can take without a second code path for one method; it
also pulls in ``datasets``, ``evaluate`` and ``aiohttp`` for what is here one loss, a pair sampler
and a logistic regression the project already has. Its default pair sampling enumerates all pairs
(the out-of-memory reports at 77+ labels), which ``pairs.py`` avoids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from tunelab.data.encoding import Encoded
from tunelab.errors import ConfigError
from tunelab.methods.full import load, save
from tunelab.methods.options import Problems
from tunelab.methods.registry import Method, register_method, trainable_count

#: The contrastive losses, all sentence-transformers': pairs to a target cosine, or in-batch negatives.
LOSSES = ("cosine", "mnrl", "triplet")
#: The smallest batch_size of each loss: a step's 2 x batch_size texts hold two labels or more.
_MIN_BATCH = {"cosine": 1, "mnrl": 2, "triplet": 4}


@dataclass
class SetFitConfig:
    """Options of the contrastive stage (the head is ``train.*``'s).

    Attributes:
        positives: same-label partners drawn per training row.
        negatives: other-label partners drawn per training row.
        max_pairs: a cap on all pairs (null: rows x (positives + negatives)).
        epochs: passes over the pairs.
        learning_rate: the encoder's learning rate in the contrastive stage (SetFit's 2e-5).
        batch_size: pairs per step (each pair is two texts).
        end_to_end: also train the encoder in the loop after the head is fitted (else the head only).
        loss: ``cosine`` (SetFit's default: CosineSimilarityLoss on the drawn pairs), ``mnrl``
            (MultipleNegativesRankingLoss: one anchor and positive per label, the batch's other
            labels as negatives) or ``triplet`` (BatchAllTripletLoss on 4 rows a label); the
            in-batch losses take as many steps as the pairs would.
    """

    positives: int = 4
    negatives: int = 4
    max_pairs: int | None = 20000
    epochs: float = 1.0
    learning_rate: float = 2e-5
    batch_size: int = 16
    end_to_end: bool = True
    loss: str = "cosine"

    def __post_init__(self) -> None:
        p = Problems("setfit")
        for name, example in (("positives", 4), ("negatives", 4), ("batch_size", 16)):
            p.positive_int(name, getattr(self, name), example)
        if self.max_pairs is not None:
            p.positive_int("max_pairs", self.max_pairs, 20000)
        p.positive("epochs", self.epochs, 1)
        p.positive("learning_rate", self.learning_rate, 2e-5)
        if isinstance(self.learning_rate, int | float) and 1 <= self.learning_rate < math.inf:
            p.add(f"learning_rate={self.learning_rate!r} (use a rate below 1, such as 2e-05)")
        if not isinstance(self.end_to_end, bool):
            p.add(f"end_to_end={self.end_to_end!r} (use true or false)")
        if self.loss not in LOSSES:
            p.add(f"loss={self.loss!r} (use one of {', '.join(LOSSES)})")
        elif isinstance(self.batch_size, int) and self.batch_size < _MIN_BATCH[self.loss]:
            # a step holds 2 x batch_size texts: two labels of 2 rows (mnrl) or of 4 (triplet) at least
            p.add(f"batch_size={self.batch_size} with loss={self.loss} (use {_MIN_BATCH[self.loss]} or more)")
        p.raise_if_any()


def before_training(model: nn.Module, train: Encoded, options: SetFitConfig, seed: int) -> list[str]:
    if any(not isinstance(label, int) for label in train.labels or []):
        raise ConfigError(
            "method setfit: pairs are drawn by label, which needs one label per row; "
            "use it with data.task=single_label (or another method)"
        )
    from tunelab.methods.setfit.contrastive import contrastive_finetune

    return contrastive_finetune(model, train, options, seed=seed)


def apply(model: nn.Module, options: SetFitConfig) -> nn.Module:
    for name, param in model.named_parameters():
        param.requires_grad_(options.end_to_end or name.startswith("classifier."))
    return model


def trained_parameters(model: nn.Module, options: Any) -> int:
    """Every weight once the contrastive stage ran: with ``end_to_end: false`` the loop trains the
    head alone, but the stage before it tuned the whole encoder and the run saves all of it (run.json
    said the head's 99 parameters on the tiny model). Without that stage (no pair could be drawn),
    what the loop trained."""
    from tunelab.methods.setfit.contrastive import TUNED_FLAG

    if getattr(model, TUNED_FLAG, False):
        return sum(p.numel() for p in model.parameters())
    return trainable_count(model)


register_method(
    Method(
        name="setfit",
        config_cls=SetFitConfig,
        apply=apply,
        save=save,
        load=load,
        default_learning_rate=2e-5,
        stores_base=True,
        description="few-shot: contrastive encoder tuning on pairs, then a logistic-regression head (SetFit)",
        cannot_merge="it stores the whole model already (a plain run): there is no adapter to fold in",
        before_training=before_training,
        tasks=("single_label",),
        tasks_why="pairs are drawn by label, which needs one label per row",
        head_only=lambda options: not options.end_to_end,
        trained_parameters=trained_parameters,
    )
)
