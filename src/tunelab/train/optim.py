"""AdamW with decoupled weight decay (none on biases and LayerNorm), warmup then linear decay."""

from __future__ import annotations

import torch
from torch import nn

from tunelab.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig, learning_rate: float) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # Standard BERT recipe: decaying biases and LayerNorm gains only hurts.
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=learning_rate)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    from transformers import get_linear_schedule_with_warmup

    warmup = round(cfg.warmup_ratio * total_steps)
    return get_linear_schedule_with_warmup(optimizer, warmup, max(total_steps, 1))
