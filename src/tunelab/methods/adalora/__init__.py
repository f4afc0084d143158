"""AdaLoRA through peft: LoRA in SVD form whose rank budget moves, while training, to the layers that need it.

Every adapted layer starts at ``init_r`` singular triplets; after a warm-up share of the steps the
least important triplets (by smoothed sensitivity x uncertainty of their weights) are masked,
following a cubic schedule, until the average rank is ``target_r``; the last share of the steps
trains with the final allocation (Zhang et al., 2023, "Adaptive Budget Allocation for
Parameter-Efficient Fine-Tuning"). The loop drives it through the method hooks:

- ``on_train_begin`` sets peft's ``total_step``/``tinit``/``tfinal`` from the run's step count (the
  options give the two phases as fractions, so they follow the run's length);
- ``on_step`` calls ``update_and_allocate(step)`` after every optimizer step, gradients still there;
- ``loss_term`` adds the orthogonality regulariser on P and Q that peft adds only when the model
  computes its own loss (the loop's loss comes from the task).

The final ranks (peft's ``rank_pattern``) are saved with the adapter, which peft stores truncated
to them; the reloaded model predicts what the trained one did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab.methods import peft_adapters
from tunelab.methods.options import Problems
from tunelab.methods.registry import Method, register_method

# peft needs a schedule when the adapter is made, before the run's length is known: the fractions
# are kept as steps out of this many, and on_train_begin rescales them to the run.
_SCALE = 1000


@dataclass
class AdaLoraOptions:
    """AdaLoRA options (see ``peft.AdaLoraConfig``).

    Defaults follow peft's AdaLoRA example (init_r 12, target_r 8, alpha 32, dropout 0.1,
    deltaT 10, beta1 = beta2 = 0.85) and its default orthogonality weight 0.5; the warm-up and
    final phases (peft's ``tinit``/``tfinal`` steps) are fractions of the run: 10% and 30%, the
    range of the paper's GLUE schedules.
    """

    init_r: int = 12
    target_r: int = 8
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] | str = field(default_factory=lambda: ["query", "value"])
    init_fraction: float = 0.1
    final_fraction: float = 0.3
    delta_t: int = 10
    beta1: float = 0.85
    beta2: float = 0.85
    orth_reg_weight: float = 0.5
    train_pooler: bool = True

    def __post_init__(self) -> None:
        problems = Problems("adalora")
        problems.positive_int("init_r", self.init_r, 12)
        problems.positive_int("target_r", self.target_r, 8)
        if not problems.found and self.target_r > self.init_r:
            problems.add(f"target_r={self.target_r} is above init_r={self.init_r} (the budget only shrinks)")
        problems.positive("alpha", self.alpha, 32)
        problems.probability("dropout", self.dropout)
        self.target_modules = problems.modules(
            "target_modules", self.target_modules, "[query, value] or all-linear"
        )
        problems.fraction("init_fraction", self.init_fraction, 0.1)
        problems.fraction("final_fraction", self.final_fraction, 0.3)
        if not problems.found and self.init_fraction + self.final_fraction >= 1:
            problems.add(
                f"init_fraction + final_fraction = {self.init_fraction + self.final_fraction:g} leaves no "
                "steps to reallocate ranks in (keep the sum below 1, e.g. 0.1 and 0.3)"
            )
        problems.positive_int("delta_t", self.delta_t, 10)
        problems.probability("beta1", self.beta1)
        problems.probability("beta2", self.beta2)
        weight = self.orth_reg_weight
        # finite too: nan and inf passed here and failed at step 1 as "loss is nan ... lower
        # train.learning_rate", leaving a .partial folder (10**400 overflows a float: refused too)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not _finite_at_least_0(weight):
            problems.add(f"orth_reg_weight={weight!r} (use a finite number >= 0 such as 0.5)")
        problems.raise_if_any()


def _finite_at_least_0(value: float) -> bool:
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:
        return False


def apply(model: nn.Module, cfg: AdaLoraOptions) -> nn.Module:
    from peft import AdaLoraConfig

    config = AdaLoraConfig(
        init_r=cfg.init_r,
        target_r=cfg.target_r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        modules_to_save=peft_adapters.head_modules(model, cfg.train_pooler),
        total_step=_SCALE,
        tinit=math.floor(cfg.init_fraction * _SCALE),
        tfinal=math.ceil(cfg.final_fraction * _SCALE),
        deltaT=cfg.delta_t,
        beta1=cfg.beta1,
        beta2=cfg.beta2,
        orth_reg_weight=cfg.orth_reg_weight,
    )
    return peft_adapters.wrap(model, config, "adalora")


def _config(model: nn.Module):
    return model.peft_config[model.active_adapter]


def on_train_begin(model: nn.Module, total_steps: int) -> None:
    """Rescale the warm-up and final phases from steps-out-of-``total_step`` to this run's steps."""
    cfg = _config(model)
    init, final = cfg.tinit / cfg.total_step, cfg.tfinal / cfg.total_step
    cfg.total_step = max(1, total_steps)
    # At least one final step, so the last allocation (update_and_allocate's force_mask) happens.
    cfg.tfinal = min(cfg.total_step, max(1, math.ceil(final * cfg.total_step)))
    cfg.tinit = min(math.floor(init * cfg.total_step), max(0, cfg.total_step - cfg.tfinal - 1))


def on_step(model: nn.Module, step: int) -> None:
    # An adapted layer the forward pass never reads (all-linear adapts BERT's pooler, which mean
    # pooling skips) has no gradient, and peft's importance update multiplies by it (a TypeError).
    # A zero gradient gives it zero importance: its triplets are the first to go, as they should.
    adapter = model.active_adapter
    for name, p in model.named_parameters():
        if p.requires_grad and p.grad is None and any(f"{k}.{adapter}" in name for k in _FACTORS):
            p.grad = torch.zeros_like(p)
    model.base_model.update_and_allocate(step)


_FACTORS = ("lora_A", "lora_B", "lora_E")


def checkpoint_state(model: nn.Module) -> dict[str, Any]:
    """What a resume needs besides the weights: the rank pattern (without it, a run resumed in its
    final phase masks with None, a TypeError on every step) and the importance averages the next
    reallocation ranks triplets by (reset, a resumed run keeps other triplets than a run that was
    never stopped)."""
    allocator = model.base_model.rankallocator
    return {
        "rank_pattern": _config(model).rank_pattern,
        "ipt": dict(allocator.ipt),
        "exp_avg_ipt": dict(allocator.exp_avg_ipt),
        "exp_avg_unc": dict(allocator.exp_avg_unc),
    }


def restore_state(model: nn.Module, state: dict[str, Any]) -> None:
    allocator = model.base_model.rankallocator
    _config(model).rank_pattern = state["rank_pattern"]
    allocator.ipt = dict(state["ipt"])
    allocator.exp_avg_ipt = dict(state["exp_avg_ipt"])
    allocator.exp_avg_unc = dict(state["exp_avg_unc"])
    # No mask here: the checkpoint's weights are those on_step left. Between two mask steps (every
    # delta_t) peft lets masked triplets train again, and the uninterrupted run keeps those values:
    # masking them on resume made it finish on other weights. In the final phase every on_step
    # masks before the checkpoint is written, so the saved weights are masked already.


def after_training(model: nn.Module) -> list[str]:
    """A run stopped early before its final allocation keeps more than ``target_r`` on average: say so."""
    cfg, layers = _config(model), ranks(model)
    if not layers:
        return []
    average = sum(layers.values()) / len(layers)
    if average <= cfg.target_r:
        return []
    return [
        f"adalora: training stopped (early stopping) before the final rank allocation at step "
        f"{cfg.total_step - cfg.tfinal}: the adapter keeps {average:g} triplets a layer on average, "
        f"not target_r={cfg.target_r} (raise train.patience or method.final_fraction to reach it)"
    ]


def loss_term(model: nn.Module) -> torch.Tensor:
    """AdaLoRA's regulariser ``mean ||P P^T - I||_F`` over the A and B factors (what peft's
    ``AdaLoraModel.forward`` adds when the model computes its own loss)."""
    adapter = model.active_adapter
    terms = []
    for name, p in model.named_parameters():
        if f"lora_A.{adapter}" in name or f"lora_B.{adapter}" in name:
            cov = p @ p.T if "lora_A" in name else p.T @ p  # (r, r)
            terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], dtype=cov.dtype)))
    if not terms:
        return torch.zeros(())
    return _config(model).orth_reg_weight * torch.stack(terms).mean()


def save(model: nn.Module, folder: Path) -> None:
    """Zero the masked triplets first (a restored best checkpoint may predate the final mask), so
    the model in memory is the one peft saves truncated to ``rank_pattern``."""
    pattern = _config(model).rank_pattern
    if pattern:
        model.base_model.rankallocator.mask_using_rank_pattern(model.base_model.model, pattern)
    peft_adapters.save(model, folder)


def ranks(model: nn.Module) -> dict[str, int]:
    """The rank each adapted layer has now: ``init_r`` until the first allocation, then the
    triplets peft's ``rank_pattern`` keeps (every layer's name without the adapter name)."""
    cfg, adapter = _config(model), model.active_adapter
    pattern = {k.replace(f".{adapter}", ""): v for k, v in (cfg.rank_pattern or {}).items()}
    out = {}
    for name, p in model.named_parameters():
        if f"lora_E.{adapter}" in name:
            key = name.removeprefix("base_model.model.").replace(f".{adapter}", "")
            out[key.replace(".lora_E", "")] = sum(pattern[key]) if key in pattern else p.shape[0]
    return out


register_method(
    Method(
        name="adalora",
        config_cls=AdaLoraOptions,
        apply=apply,
        save=save,
        load=peft_adapters.loader_for("adalora", peft_type="ADALORA"),
        merge=peft_adapters.merge,
        default_learning_rate=1e-3,
        stores_base=False,
        description="LoRA whose rank budget is reallocated across layers while training (peft)",
        on_step=on_step,
        on_train_begin=on_train_begin,
        loss_term=loss_term,
        checkpoint_state=checkpoint_state,
        restore_state=restore_state,
        after_training=after_training,
    )
)
