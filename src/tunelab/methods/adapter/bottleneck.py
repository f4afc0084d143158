"""The bottleneck module and where it goes in a BERT-family encoder.

A BERT layer's two output blocks (``BertSelfOutput`` after attention, ``BertOutput`` after the
feed-forward) compute ``LayerNorm(dropout(dense(h)) + residual)``. A forward hook on their
``dropout`` replaces its output ``x`` with ``adapter(x) = x + up(act(down(x)))``: exactly Houlsby's
placement (after the projection, before the skip connection and LayerNorm), with no change to
transformers' code and no renamed base weight. The adapter module is registered on the output
block (``...attention.output.adapter``, ``...layer.3.output.adapter``), so it trains, saves and
moves with the model; the hook is a small object holding it (not a closure), so ``copy.deepcopy``
(compress does) hooks the copy's adapter, not the original's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunelab.errors import ConfigError
from tunelab.methods.wrapped_model import WrappedModel

KINDS = ("houlsby", "pfeiffer")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU, "tanh": nn.Tanh}
# AdapterHub's defaults: "double_seq_bn" (Houlsby) uses swish, "seq_bn" (Pfeiffer) ReLU.
DEFAULT_ACTIVATION = {"houlsby": "swish", "pfeiffer": "relu"}


class Bottleneck(nn.Module):
    """``x + up(act(down(x)))``: H -> H / reduction -> H, starting as the identity (``up`` is zero)."""

    def __init__(self, hidden: int, reduction: int, activation: str, dropout: float) -> None:
        super().__init__()
        width = max(1, hidden // reduction)
        self.down = nn.Linear(hidden, width)
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(width, hidden)
        # Near-identity start (Houlsby et al.): small down-projection, zero up-projection.
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, T, H)
        return x + self.up(self.dropout(self.act(self.down(x))))


class _RunAdapter:
    """Forward hook on an output block's dropout: its output goes through the adapter."""

    def __init__(self, adapter: Bottleneck) -> None:
        self.adapter = adapter

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return self.adapter(output)


def output_blocks(model: nn.Module) -> list[tuple[str, nn.Module, bool]]:
    """``(name, block, after_attention)`` for every BERT-style output block in ``model``."""
    found = []
    for name, module in model.named_modules():
        dense, dropout, norm = (getattr(module, a, None) for a in ("dense", "dropout", "LayerNorm"))
        kinds = (nn.Linear, nn.Dropout, nn.LayerNorm)
        if all(isinstance(m, kind) for m, kind in zip((dense, dropout, norm), kinds, strict=True)):
            found.append((name, module, name.endswith("attention.output")))
    return found


def checked_blocks(model: nn.Module, kind: str) -> list[tuple[str, nn.Module, bool]]:
    """``output_blocks(model)``, refusing a model where adapters of ``kind`` would not all go in.

    Raises:
        ConfigError: no feed-forward output block at all; or, for ``houlsby``, a layer with one but
            no attention output block of that shape (MPNet's attention projects with ``attn.o``):
            its layers got the feed-forward adapter alone, half of Houlsby's, without a word.
    """
    blocks = output_blocks(model)
    if not any(not attention for _, _, attention in blocks):
        raise ConfigError(
            "method adapter: the model has no BERT-style layer outputs (a module with dense, "
            "dropout and LayerNorm); bottleneck adapters support BERT-family encoders "
            "(BERT, MiniLM, RoBERTa, XLM-R, ELECTRA)"
        )
    if kind == "houlsby":
        # A layer's blocks: <layer>.output (feed-forward) and <layer>.attention.output.
        attended = {name.removesuffix(".attention.output") for name, _, attention in blocks if attention}
        bare = [
            name for name, _, attention in blocks if not attention and name.rpartition(".")[0] not in attended
        ]
        if bare:
            model_type = getattr(model.base_model.config, "model_type", None) or type(model).__name__
            raise ConfigError(
                f"method adapter: kind=houlsby puts an adapter after each layer's attention output too, "
                f"and {model_type}'s has no BERT-style one (a module with dense, dropout and LayerNorm) "
                f"beside its feed-forward output {bare[0]}; use method.kind=pfeiffer (feed-forward "
                "adapters only), lora or full"
            )
    return blocks


class AdapterModel(WrappedModel):
    """The task model with a bottleneck after the chosen output blocks of every layer."""

    method = "adapter"

    def __init__(self, model: nn.Module, options: Any) -> None:
        super().__init__(model, options)
        blocks = checked_blocks(model, options.kind)
        activation = options.activation
        if activation == "auto":
            activation = DEFAULT_ACTIVATION[options.kind]
        for _, block, after_attention in blocks:
            if options.train_layer_norm:  # every block's, as Houlsby et al. (a Pfeiffer one has no adapter)
                for p in block.LayerNorm.parameters():
                    p.requires_grad_(True)
            if after_attention and options.kind == "pfeiffer":
                continue
            hidden = block.dense.out_features
            adapter = Bottleneck(hidden, options.reduction_factor, activation, options.dropout)
            block.adapter = adapter
            block.dropout.register_forward_hook(_RunAdapter(adapter))
