"""Batched forward passes for evaluation and prediction."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from tunelab.data.encoding import Encoded, collate, inference_batches


def batched_outputs(fn: Callable[..., torch.Tensor], enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
    """``fn(**batch)`` over length-grouped batches, as a float array in input order.

    Per-token outputs (B, T, L) are zero-padded to the longest example of ``enc``, so the result
    is one (N, T_max, L) array whatever the batches were.
    """
    chunks: list[np.ndarray] = []
    order: list[int] = []
    with torch.inference_mode():
        for idx in inference_batches(enc.lengths, batch_size):
            chunks.append(fn(**collate(enc, idx)).float().numpy())
            order.extend(idx)
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    if chunks[0].ndim == 3:  # per-token outputs: pad every batch to the set's longest example
        width = max(c.shape[1] for c in chunks)
        chunks = [np.pad(c, ((0, 0), (0, width - c.shape[1]), (0, 0))) for c in chunks]
    stacked = np.concatenate(chunks)
    out = np.empty_like(stacked)
    out[np.asarray(order)] = stacked
    return out


def predict_logits(model: nn.Module, enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
    """Logits (N, num_labels) or, per token, (N, T, num_labels), in input order."""
    model.eval()
    return batched_outputs(lambda **batch: model(**batch).logits, enc, batch_size=batch_size)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))
