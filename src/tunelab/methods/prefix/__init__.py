"""Prefix tuning: learned keys and values prepended in every attention layer; the encoder stays frozen.

Li & Liang, 2021, "Prefix-Tuning"; Liu et al., 2022, "P-Tuning v2" (the same for classifiers and
tagging). The prefix is peft's ``PrefixEncoder`` (an embedding of ``tokens`` x layers x 2 x H, or a
two-layer MLP producing it when ``projection`` is on); this module feeds it to the encoder.

Why not peft's ``PrefixTuningConfig`` model: peft 0.21 hands the prefix to the model as
``past_key_values`` and refuses a model whose ``forward`` does not name that argument ("Model does
not support past key values which are required for prefix tuning"). transformers 5 renamed it
``cache`` on BERT-family encoders (``BertModel.forward(..., cache=...)``; ``past_key_values`` is
only a deprecated alias until 5.40), so peft prefix tuning fails on the stock BERT sequence and
token classifiers. Here the prefix goes in as a ``DynamicCache`` under whichever name the encoder
takes; the attention mask covers the P prefix positions, and the real tokens keep positions
0..T-1 (BERT would otherwise shift them by P, as if the prefix were earlier text).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab.errors import ConfigError
from tunelab.methods import wrapped_model
from tunelab.methods.options import Problems
from tunelab.methods.registry import Method, ModelLoader, register_method
from tunelab.methods.wrapped_model import WrappedModel


@dataclass
class PrefixOptions:
    """Prefix tuning options (peft's ``num_virtual_tokens``, ``prefix_projection``, ``encoder_hidden_size``).

    ``tokens`` 20 is peft's documented example for sequence classification and P-Tuning v2's length
    for simple classification tasks (it used up to 100-200 for hard ones such as NER);
    ``projection`` (the MLP reparameterisation of Li & Liang) is off: P-Tuning v2 found it helps
    on some tasks and hurts on others, and it multiplies the trained parameters.
    """

    tokens: int = 20
    projection: bool = False
    projection_dim: int = 512
    train_pooler: bool = True

    def __post_init__(self) -> None:
        problems = Problems("prefix")
        problems.positive_int("tokens", self.tokens, 20)
        problems.positive_int("projection_dim", self.projection_dim, 512)
        problems.raise_if_any()

    def check_model(self, model: nn.Module) -> None:
        """What ``PrefixTuned`` checks of ``model``, for ``tunelab validate`` (on its skeleton)."""
        cache_argument(model)


def cache_argument(model: nn.Module) -> str:
    """The name under which ``model``'s encoder takes a key/value cache (the prefix goes in there).

    Raises:
        ConfigError: the encoder takes none (DistilBERT, DeBERTa-v2): the prefix went into
            ``**kwargs`` unread, and the first forward failed with a tensor size error after the run
            folder was made.
    """
    encoder = model.base_model
    params = inspect.signature(encoder.forward).parameters
    if "cache" not in params and "past_key_values" not in params:
        raise ConfigError(
            f"method prefix: {encoder.config.model_type} takes no key/value cache, so it cannot attend "
            "to a prefix; use prompt, lora or full"
        )
    return "cache" if "cache" in params else "past_key_values"


class PrefixTuned(WrappedModel):
    """The task model attending, in every layer, to ``tokens`` learned key/value pairs first."""

    method = "prefix"

    def __init__(self, model: nn.Module, options: PrefixOptions) -> None:
        from peft import PrefixTuningConfig
        from peft.tuners.prefix_tuning import PrefixEncoder

        super().__init__(model, options)
        encoder = model.base_model
        cfg = encoder.config
        self.layers, self.heads = cfg.num_hidden_layers, cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.prefix = PrefixEncoder(
            PrefixTuningConfig(
                num_virtual_tokens=options.tokens,
                token_dim=cfg.hidden_size,
                num_layers=cfg.num_hidden_layers,
                num_attention_heads=cfg.num_attention_heads,
                encoder_hidden_size=options.projection_dim,
                prefix_projection=options.projection,
                num_transformer_submodules=1,
            )
        )
        self.register_buffer("prefix_ids", torch.arange(options.tokens), persistent=False)
        self.cache_argument = cache_argument(model)
        # RoBERTa-family embeddings count positions from padding_idx + 1 (BERT's from 0): arange(T)
        # gave every token the position two before its own, the first one the padding's
        padding_idx = getattr(getattr(encoder, "embeddings", None), "padding_idx", None)
        self.first_position = padding_idx + 1 if isinstance(padding_idx, int) else 0

    def past(self, batch: int) -> Any:
        """The prefix as a ``DynamicCache``: per layer, keys and values (B, heads, P, head_dim)."""
        from transformers import DynamicCache

        p = self.prefix_ids.shape[0]
        kv = self.prefix(self.prefix_ids.unsqueeze(0))  # (1, P, layers * 2 * H)
        kv = kv.view(p, self.layers * 2, self.heads, self.head_dim).permute(1, 2, 0, 3)  # (2L, nh, P, hd)
        cache = DynamicCache()
        for layer in range(self.layers):
            keys, values = kv[2 * layer], kv[2 * layer + 1]  # (nh, P, hd) each
            cache.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), layer)
        return cache

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        shape = (input_ids if input_ids is not None else inputs_embeds).shape
        b, t, p = shape[0], shape[1], self.prefix_ids.shape[0]
        device = self.prefix_ids.device
        if attention_mask is None:
            attention_mask = torch.ones(b, t, dtype=torch.long, device=device)
        mask = torch.cat([attention_mask.new_ones(b, p), attention_mask], dim=1)  # (B, P + T)
        if position_ids is None:
            positions = torch.arange(t, device=device) + self.first_position
            position_ids = positions.expand(b, t)  # (B, T), not shifted by P
        kwargs[self.cache_argument] = self.past(b)
        return self.model(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            position_ids=position_ids,
            **kwargs,
        )


def apply(model: nn.Module, cfg: PrefixOptions) -> nn.Module:
    wrapped_model.train_only_head(model, cfg.train_pooler)
    return PrefixTuned(model, cfg)


def load(folder: Path, loader: ModelLoader) -> nn.Module:
    return wrapped_model.load(folder, loader, method="prefix", options_cls=PrefixOptions, apply=apply)


register_method(
    Method(
        name="prefix",
        config_cls=PrefixOptions,
        apply=apply,
        save=wrapped_model.save,
        load=load,
        # peft's prefix-tuning classification example and P-Tuning v2 train the prefix at 1e-2.
        default_learning_rate=1e-2,
        stores_base=False,
        description="learned keys and values before the input in every layer (peft's PrefixEncoder)",
        cannot_merge="a prefix is extra keys and values in every attention layer, not a change to "
        "any weight; it cannot be folded into the base model",
    )
)
