"""Numeric edge cases found by review: a multi-label class weight of 0, and losses capped by epsilons."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tunelab.data.encoding import Encoded
from tunelab.tasks.classification.scoring import score
from tunelab.tasks.classification.task import ClassificationTask
from tunelab.tasks.token_classification.encoding import IGNORE
from tunelab.tasks.token_classification.task import _loss


def test_a_label_in_every_row_keeps_a_positive_weight() -> None:
    """pos_weight was negatives / positives: 0 for a label in every row, whose positive term then
    vanished (and it has no negatives): with train.class_weights=true it never learned."""
    rows = SimpleNamespace(labels=[[0, 1], [0], [0, 2], [0]])  # label 0 always, 3 never
    weights = ClassificationTask(multi=True).class_weights(rows, num_labels=4)
    assert weights.tolist() == [1.0, 3.0, 3.0, 1.0]


def test_with_that_weight_the_always_label_learns() -> None:
    weights = ClassificationTask(multi=True).class_weights(SimpleNamespace(labels=[[0], [0, 1]]), 2)
    logits = torch.zeros(2, 2, requires_grad=True)
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights).backward()
    assert logits.grad is not None and (logits.grad[:, 0] < 0).all()  # pushed up, towards its label


@pytest.mark.parametrize("gap", [5.0, 40.0, 200.0])
def test_the_reported_loss_of_a_confident_mistake_is_its_cross_entropy(gap: float) -> None:
    """It was capped at 27.6 (single-label) and 16.1 (multi-label) whatever the logit gap."""
    single, _ = score(np.array([[0.0, gap]], np.float32), [0], ["a", "b"], multi=False, threshold=None)
    expected = float(torch.nn.functional.cross_entropy(torch.tensor([[0.0, gap]]), torch.tensor([0])))
    assert single["loss"] == pytest.approx(expected, rel=1e-6)
    multi, _ = score(np.array([[-gap]], np.float32), [[0]], ["a"], multi=True, threshold=0.5)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([[-gap]]), torch.tensor([[1.0]]))
    assert multi["loss"] == pytest.approx(float(bce), rel=1e-6)


def test_the_ner_loss_of_a_confident_mistake_is_its_cross_entropy() -> None:
    logits = np.array([[[0.0, 40.0], [40.0, 0.0], [0.0, 0.0]]], np.float32)  # one window, 3 tokens
    enc = Encoded(input_ids=[[1, 2, 3]], token_type_ids=None, labels=[[0, 0, IGNORE]], pad_id=0)
    assert _loss(logits, enc) == pytest.approx((40.0 + 0.0) / 2, rel=1e-6)
