"""Pruning before export: unstructured weight magnitude, or whole attention heads.

Magnitude pruning zeroes the smallest weights of the encoder's linear layers (one global L1
ranking, so layers that matter less lose more); the tensors keep their shape, so it shrinks
nothing by itself and is mainly useful with a sparse-aware runtime or as a regulariser study.
Head pruning removes whole heads: the query/key/value rows and the output projection's columns
of each dropped head are cut out, so every format gets smaller and faster matrices.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from tunelab.errors import RunError


def prune_magnitude(model: nn.Module, fraction: float) -> dict[str, Any]:
    """Zero the ``fraction`` smallest-magnitude weights over all encoder linear layers, permanently."""
    from torch.nn.utils import prune

    encoder = getattr(model, "encoder", model)
    params = [(m, "weight") for m in encoder.modules() if isinstance(m, nn.Linear)]
    if not params:
        raise RunError("magnitude pruning found no linear layers in the encoder")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=fraction)
    for module, name in params:
        prune.remove(module, name)  # fold the mask into the weight: a plain tensor again
    total = sum(m.weight.numel() for m, _ in params)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in params)
    return {"method": "magnitude", "fraction": fraction, "layers": len(params), "sparsity": zeros / total}


def attention_blocks(model: nn.Module) -> list[nn.Module]:
    """BERT-style attention blocks: ``.self`` with query/key/value and ``.output.dense``."""
    blocks = [
        m
        for m in model.modules()
        if all(hasattr(getattr(m, "self", None), p) for p in ("query", "key", "value", "attention_head_size"))
        and isinstance(getattr(getattr(m, "output", None), "dense", None), nn.Linear)
    ]
    if not blocks:
        raise RunError(
            "head pruning needs BERT-style attention (query/key/value and output.dense); "
            "use --prune-method magnitude for this model"
        )
    return blocks


def head_counts(model: nn.Module) -> list[int]:
    return [int(b.self.num_attention_heads) for b in attention_blocks(model)]


def keep_heads(block: nn.Module, keep: list[int]) -> None:
    """Cut ``block`` down to the heads in ``keep`` (indices into its current heads)."""
    from transformers.pytorch_utils import prune_linear_layer

    att = block.self
    size = int(att.attention_head_size)
    index = torch.cat([torch.arange(h * size, (h + 1) * size) for h in keep]).long()
    att.query = prune_linear_layer(att.query, index)
    att.key = prune_linear_layer(att.key, index)
    att.value = prune_linear_layer(att.value, index)
    block.output.dense = prune_linear_layer(block.output.dense, index, dim=1)
    att.num_attention_heads = len(keep)
    att.all_head_size = len(keep) * size  # forward reshapes with -1, so nothing else changes


def set_head_counts(model: nn.Module, counts: list[int]) -> None:
    """Give each attention block its first ``counts[i]`` heads: rebuilds a saved pruned shape."""
    blocks = attention_blocks(model)
    if len(counts) != len(blocks):
        raise RunError(f"saved head counts cover {len(counts)} layers, the model has {len(blocks)}")
    for block, count in zip(blocks, counts, strict=True):
        if count != block.self.num_attention_heads:
            keep_heads(block, list(range(count)))


def prune_heads(
    model: nn.Module, fraction: float, batches: Iterable[dict[str, torch.Tensor]] | None, *, task: str
) -> dict[str, Any]:
    """Remove ``fraction`` of all attention heads, least important first, at least one per layer.

    Importance is Michel et al. (2019)'s: |d loss / d gate| for a gate multiplying each head's
    output, summed over ``batches`` (labelled) and normalised per layer. Without batches the L2
    norm of each head's weights stands in (cruder: it ignores what the head does to the loss).
    """
    blocks = attention_blocks(model)
    scores = _gradient_importance(model, blocks, batches, task) if batches is not None else None
    if scores is None:
        scores = [_weight_importance(b) for b in blocks]
    scores = [s / (s.norm() + 1e-12) for s in scores]
    total = sum(len(s) for s in scores)
    ranked = sorted((float(s[h]), layer, h) for layer, s in enumerate(scores) for h in range(len(s)))
    to_drop = round(fraction * total)
    dropped: dict[int, list[int]] = {}
    for _, layer, head in ranked:
        if sum(len(v) for v in dropped.values()) >= to_drop:
            break
        if len(scores[layer]) - len(dropped.get(layer, [])) > 1:
            dropped.setdefault(layer, []).append(head)
    for layer, block in enumerate(blocks):
        if dropped.get(layer):
            keep_heads(block, [h for h in range(len(scores[layer])) if h not in dropped[layer]])
    return {
        "method": "heads",
        "fraction": fraction,
        "importance": "gradient" if batches is not None else "weight norm",
        "heads_before": total,
        "heads_after": sum(head_counts(model)),
        "heads_per_layer": head_counts(model),
        "dropped": {str(k): sorted(v) for k, v in sorted(dropped.items())},
    }


def _weight_importance(block: nn.Module) -> torch.Tensor:
    att, size = block.self, int(block.self.attention_head_size)
    with torch.no_grad():
        rows = [att.query.weight, att.key.weight, att.value.weight, block.output.dense.weight.T]
        per_head = [w.reshape(-1, size, w.shape[-1]).pow(2).sum(dim=(1, 2)) for w in rows]
    return torch.stack(per_head).sum(dim=0).sqrt()


def _gradient_importance(
    model: nn.Module, blocks: list[nn.Module], batches: Iterable[dict[str, torch.Tensor]], task: str
) -> list[torch.Tensor] | None:
    gates = [torch.ones(int(b.self.num_attention_heads), requires_grad=True) for b in blocks]

    def gate_hook(gate: torch.Tensor):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            states = output[0] if isinstance(output, tuple) else output  # (B, T, heads * size)
            shape = states.shape
            gated = (states.view(*shape[:-1], len(gate), -1) * gate[:, None]).view(shape)
            return (gated, *output[1:]) if isinstance(output, tuple) else gated

        return hook

    handles = [b.self.register_forward_hook(gate_hook(g)) for b, g in zip(blocks, gates, strict=True)]
    sums = [torch.zeros_like(g) for g in gates]
    seen = 0
    model.eval()
    try:
        with torch.enable_grad():
            for batch in batches:
                labels = batch.pop("labels")
                logits = model(**batch).logits
                if task == "multi_label":
                    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
                else:
                    loss = nn.functional.cross_entropy(logits, labels)
                grads = torch.autograd.grad(loss, gates)
                sums = [s + g.abs() for s, g in zip(sums, grads, strict=True)]
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
    return sums if seen else None
