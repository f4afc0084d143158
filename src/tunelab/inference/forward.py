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

    The result is allocated once, at the first batch, and each batch is written into its rows:
    padding every batch to the set's width, concatenating them and reordering the whole made three
    (N, T_max, L) arrays at once (one long sentence among 30,000 short ones: +270 MB).
    """
    out: np.ndarray | None = None
    widest = 0  # per-token outputs: the most positions a batch gave, the result's width
    with torch.inference_mode():
        for idx in inference_batches(enc.lengths, batch_size):
            chunk = fn(**collate(enc, idx)).float().numpy()
            rows = np.asarray(idx)
            if chunk.ndim != 3:
                if out is None:
                    out = np.empty((len(enc), *chunk.shape[1:]), chunk.dtype)
                out[rows] = chunk
                continue
            if out is None:  # as wide as the widest batch ``collate`` makes: the last, sorted by length
                width = max(len(ids) for ids in enc.input_ids)
                out = np.zeros((len(enc), max(width, chunk.shape[1]), chunk.shape[2]), chunk.dtype)
            if chunk.shape[1] > out.shape[1]:  # ``fn`` gave more positions than tokens (not seen)
                out = np.pad(out, ((0, 0), (0, chunk.shape[1] - out.shape[1]), (0, 0)))
            widest = max(widest, chunk.shape[1])
            out[rows, : chunk.shape[1]] = chunk
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    if out.ndim == 3 and widest < out.shape[1]:  # ``fn`` gave fewer positions than tokens: its width
        out = np.ascontiguousarray(out[:, :widest])
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
    """scipy's expit: ``1 / (1 + exp(-x))`` warned "overflow encountered in exp" below x = -88 (float32)."""
    from scipy.special import expit

    return expit(logits)
