"""Unstructured pruning before export: zero the smallest weights (``--prune-method magnitude``).

One global L1 ranking over the encoder's linear layers, so layers that matter less lose more. The
tensors keep their shape, so it shrinks nothing by itself: it is for a sparse-aware runtime or a
regulariser study. Pruning that makes matrices smaller and faster (heads, FFN neurons) is
``structured.py``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from tunelab.errors import RunError


def prune_magnitude(model: nn.Module, fraction: float) -> dict[str, Any]:
    """Zero the ``fraction`` smallest-magnitude weights over all encoder linear layers, permanently."""
    from torch.nn.utils import prune

    encoder = getattr(model, "base_model", model)  # a transformers classifier's encoder, not its head
    params = [(m, "weight") for m in encoder.modules() if isinstance(m, nn.Linear)]
    if not params:
        raise RunError("magnitude pruning found no linear layers in the encoder")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=fraction)
    for module, name in params:
        prune.remove(module, name)  # fold the mask into the weight: a plain tensor again
    total = sum(m.weight.numel() for m, _ in params)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in params)
    return {"method": "magnitude", "fraction": fraction, "layers": len(params), "sparsity": zeros / total}
