"""Dropout with a cheaper random source on CPU, for the training loop (``train.fast_dropout``).

torch's CPU dropout draws one Mersenne-Twister number per element (``bernoulli_``): profiled on a
bf16 training step of the bundled MiniLM on 2 cores (batch 32), those draws were 19% of the step,
more than the optimizer. This dropout draws 64 random bits per four elements from the same seeded
torch generator (``random_`` on int64 words, ~15x cheaper per element than ``bernoulli_``) and
keeps an element when its 16 bits clear ``p * 65536``: the same Bernoulli distribution up to a
keep probability rounded to 1/65536, scaled by exactly its inverse, and as reproducible as torch's
(same generator, same ``torch.manual_seed``). Written by hand because neither torch nor
transformers offers a cheaper CPU dropout; off the CPU (CUDA has a fast Philox dropout) and in
eval mode it is torch's own.

Two places draw dropout masks in a transformers encoder, and both are switched for the block of
:func:`fast_dropout`: every plain ``nn.Dropout`` module (hidden, embedding, head and LoRA dropout),
and the attention-probability dropout, which torch's ``scaled_dot_product_attention`` draws
inside its C++ math path. For the latter, a model on the default ``sdpa`` attention (through
transformers' ``AttentionInterface``) runs :func:`attention` instead: the same steps (scores,
boolean padding mask, softmax, dropout, values) with the cheap draw. One difference: under bf16
autocast these steps run in bf16, where torch's math path upcasts them to fp32 (a review measured
8.5e-3 against 4.3e-3 relative error to fp32 on random inputs, and an attention mass of 0.9985
instead of 1 after dropout, from the bf16-rounded scale); dev accuracy showed no cost (README).
Attending in fp32 as the math path does was measured and not kept: 1.3% slower and 75 MB more
peak memory for full fine-tuning, about 100 MB for LoRA (above its peak before issue 16), with the
same dev accuracy (README, "Training speed against the peers").
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
from transformers.modeling_utils import PreTrainedModel

_LEVELS = 65536  # 16 random bits per element
ATTENTION = "tunelab_fast_dropout"  # the name registered with transformers' attention interfaces


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A boolean keep-mask with P(keep) = 1 - p (to 1/65536), and the scale that keeps the mean.

    Four 16-bit lanes per int64 word drawn over the full int64 range, so every lane is uniform on
    [-32768, 32767]; a lane is kept when it is at least ``round(p * 65536) - 32768``.
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), 2**63 - 1)
    lanes = words.view(torch.int16)[:n].view(shape)
    dropped = round(p * _LEVELS)
    keep = lanes >= dropped - _LEVELS // 2
    return keep, _LEVELS / (_LEVELS - dropped)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``nn.functional.dropout`` with the cheaper draw on CPU tensors (torch's own elsewhere)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or round(p * _LEVELS) >= _LEVELS:  # p this close to 1: all dropped
        return nn.functional.dropout(x, p, training)
    keep, scale = keep_mask(x.shape, p, x.device)
    return x * (keep.to(x.dtype) * scale)


_dropout = dropout  # for attention(), whose ``dropout`` argument (transformers' name) shadows it


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose training-mode forward uses :func:`dropout` (same ``p``, same state)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.inplace:  # the cheap draw builds a new tensor; keep torch's in-place semantics
            return super().forward(input)
        return dropout(input, self.p, self.training)


def attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention, with the probabilities' dropout drawn by :func:`dropout`.

    Only the case that draws a mask is computed here: a module that says it is not causal, with
    as many key as query heads and no position bias or soft cap, on CPU, in training. Everything
    else (no dropout, causal, grouped-query or biased attention, another device) is handed to
    transformers' own ``sdpa_attention_forward``.
    """
    # transformers' sdpa takes a module without ``is_causal`` as causal, and some models pass a
    # position bias (T5) or a soft cap: all of those stay with it.
    plain = (
        getattr(module, "is_causal", None) is False
        and not kwargs.get("is_causal")
        and kwargs.get("position_bias") is None
        and kwargs.get("softcap") is None
        and key.shape[1] == query.shape[1]
    )
    if dropout == 0.0 or query.device.type != "cpu" or not plain:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scale
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # sdpa_mask: True where a position may be attended
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = _dropout(nn.functional.softmax(scores, dim=-1), dropout)
    output = torch.matmul(probs.to(value.dtype), value)
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)


def _sdpa_configs(model: nn.Module) -> list:
    """The configs of ``model``'s transformers (sub)models that attend through the sdpa interface."""
    configs = []
    for module in model.modules():
        config = getattr(module, "config", None)
        if (
            isinstance(module, PreTrainedModel)
            and getattr(config, "_attn_implementation", None) == "sdpa"
            and module._can_set_attn_implementation()
            and all(config is not seen for seen in configs)
        ):
            configs.append(config)
    return configs


@contextlib.contextmanager
def fast_dropout(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block, ``model``'s dropout masks are drawn the cheap way.

    Every plain ``nn.Dropout`` changes class in place (to :class:`FastDropout`, a subclass, so
    isinstance checks and the state dict are unchanged), and every (sub)model on ``sdpa``
    attention attends through :func:`attention`; both change back on exit, also on an exception,
    so what is saved or exported afterwards is the model as it was. Yields how many modules and
    configs were switched.
    """
    switched: list[nn.Module] = []
    configs: list = []
    try:
        if enabled:
            for module in model.modules():
                if type(module) is nn.Dropout:
                    module.__class__ = FastDropout
                    switched.append(module)
            for config in _sdpa_configs(model):
                config._attn_implementation_internal = ATTENTION
                configs.append(config)
        yield len(switched) + len(configs)
    finally:
        for module in switched:
            module.__class__ = nn.Dropout
        for config in configs:
            config._attn_implementation_internal = "sdpa"
