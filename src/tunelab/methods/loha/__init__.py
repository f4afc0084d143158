"""LoHa through peft: the weight update as a Hadamard product of two low-rank products (LyCORIS).

``dW = (B1 A1) * (B2 A2)`` reaches rank up to r^2 with the parameters of two rank-r LoRAs
(Hyeon-Woo et al., 2022, FedPara). It folds into the weights, so a run merges into a plain model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from tunelab.methods import peft_adapters
from tunelab.methods.options import Problems
from tunelab.methods.registry import Method, register_method


@dataclass
class LohaOptions:
    """LoHa options (see ``peft.LoHaConfig``); ``r`` and ``alpha`` default to peft's (8 and 8),
    the target modules to LoRA's choice for BERT (query and value)."""

    r: int = 8
    alpha: float = 8
    rank_dropout: float = 0.0
    module_dropout: float = 0.0
    target_modules: list[str] | str = field(default_factory=lambda: ["query", "value"])
    train_pooler: bool = True

    def __post_init__(self) -> None:
        problems = Problems("loha")
        problems.positive_int("r", self.r, 8)
        problems.positive("alpha", self.alpha, 8)
        problems.probability("rank_dropout", self.rank_dropout)
        problems.probability("module_dropout", self.module_dropout)
        self.target_modules = problems.modules(
            "target_modules", self.target_modules, "[query, value] or all-linear"
        )
        problems.raise_if_any()


def apply(model: nn.Module, cfg: LohaOptions) -> nn.Module:
    from peft import LoHaConfig

    config = LoHaConfig(
        r=cfg.r,
        alpha=cfg.alpha,
        rank_dropout=cfg.rank_dropout,
        module_dropout=cfg.module_dropout,
        target_modules=cfg.target_modules,
        modules_to_save=peft_adapters.head_modules(model, cfg.train_pooler),
    )
    return peft_adapters.wrap(model, config, "loha")


register_method(
    Method(
        name="loha",
        config_cls=LohaOptions,
        apply=apply,
        save=peft_adapters.save,
        load=peft_adapters.loader_for("loha", peft_type="LOHA"),
        merge=peft_adapters.merge,
        sharing=peft_adapters.sharing_for("loha", peft_type="LOHA", mixed=False),
        default_learning_rate=1e-3,  # as LoRA's: LyCORIS trains LoHa with LoRA-like rates
        stores_base=False,
        description="low-rank Hadamard product adapters (peft, LyCORIS)",
    )
)
