"""AdamW with decoupled weight decay (none on biases and LayerNorm), warmup then linear decay."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunelab.config import TrainConfig
from tunelab.errors import ConfigError

HEAD_LEARNING_RATE = 2e-3

# How a head began (run.json's head_init) -> the train.head_init its learning rate follows: a
# continued head ("continued": old rows copied, new rows random) learns as a random head does; one
# refitted on frozen features ("continued-probe", continual.head: probe) as a probe's.
_HEAD_AS = {"continued": "random", "continued-probe": "probe"}


def fitted_head(head_init: str) -> str:
    """``random`` or ``probe``: how ``head_init`` (run.json's, which has two more values) learns."""
    return _HEAD_AS.get(head_init, head_init)


def head_learning_rate(cfg: TrainConfig, learning_rate: float) -> float:
    """A random head needs big steps; a linear-probe head is already fitted and keeps the body's."""
    if cfg.head_learning_rate:
        return cfg.head_learning_rate
    return learning_rate if cfg.head_init == "probe" else max(learning_rate, HEAD_LEARNING_RATE)


def build_optimizer(model: nn.Module, cfg: TrainConfig, learning_rate: float) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters in four groups: (body | head) x (decay | no decay)."""
    head_lr = head_learning_rate(cfg, learning_rate)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = ".classifier." in f".{name}."
        # Standard BERT recipe: decaying biases and LayerNorm gains only hurts.
        decays = not (param.ndim < 2 or "LayerNorm" in name)
        groups.setdefault((is_head, decays), []).append(param)
    # One fused kernel per step instead of torch's default on CPU, a loop over the tensors: faster (README,
    # "Training speed"), and what Hugging Face Trainer uses by default. Only float tensors on CPU or
    # CUDA have the fused kernel.
    params = [p for group in groups.values() for p in group]
    decayed_rates = [head_lr if is_head else learning_rate for is_head, decays in groups if decays]
    if decayed_rates:
        _check_decay(cfg, max(decayed_rates))
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": head_lr if is_head else learning_rate,
                "weight_decay": cfg.weight_decay if decays else 0.0,
            }
            for (is_head, decays), params in sorted(groups.items())
        ],
        lr=learning_rate,
        fused=fused or None,
    )


def learning_rate_in_force(cfg: TrainConfig, method: Any) -> float:
    """``train.learning_rate``, or the method's default when none is given: the one rate the
    trainer, ``validate`` and ``search``'s up-front checks all use."""
    return cfg.learning_rate or method.default_learning_rate


def check_weight_decay(cfg: TrainConfig, learning_rate: float) -> None:
    """Refuse a weight decay that zeroes or flips the weights at ``learning_rate`` or the head's:
    called before a run folder is made, so the refusal leaves nothing to delete."""
    _check_decay(cfg, max(learning_rate, head_learning_rate(cfg, learning_rate)))


def _check_decay(cfg: TrainConfig, learning_rate: float) -> None:
    """AdamW's decoupled decay multiplies each weight by 1 - lr x weight_decay every step: at 1 or
    more that zeroes or flips every weight (weight_decay=1e30 trained a model whose outputs were NaN,
    and with one optimizer step the run "finished" so). The bound needs the learning rate in force,
    which the config alone does not know (a method's default, the head's own rate)."""
    if learning_rate * cfg.weight_decay >= 1:
        raise ConfigError(
            f"train.weight_decay={cfg.weight_decay} with learning rate {learning_rate:g} shrinks every "
            f"weight by {learning_rate * cfg.weight_decay:g} of itself per step (AdamW: lr x weight_decay, "
            "which must stay below 1); use a weight decay such as 0.01"
        )


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    from transformers import get_linear_schedule_with_warmup

    warmup = round(cfg.warmup_ratio * total_steps)
    return get_linear_schedule_with_warmup(optimizer, warmup, max(total_steps, 1))
