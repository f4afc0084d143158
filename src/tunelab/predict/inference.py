"""Batched forward passes for evaluation and prediction."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from tunelab.data.encoding import Encoded, collate, inference_batches


def batched_outputs(fn: Callable[..., torch.Tensor], enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
    """``fn(**batch)`` over length-grouped batches, as a float array in input order."""
    chunks: list[np.ndarray] = []
    order: list[int] = []
    with torch.inference_mode():
        for idx in inference_batches(enc.lengths, batch_size):
            chunks.append(fn(**collate(enc, idx)).float().numpy())
            order.extend(idx)
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    stacked = np.concatenate(chunks)
    out = np.empty_like(stacked)
    out[np.asarray(order)] = stacked
    return out


def predict_logits(model: nn.Module, enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
    """Logits (N, num_labels) in input order; batches are grouped by length for speed."""
    model.eval()
    return batched_outputs(lambda **batch: model(**batch).logits, enc, batch_size=batch_size)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))
