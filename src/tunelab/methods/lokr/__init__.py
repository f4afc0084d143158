"""LoKr through peft: the weight update as a Kronecker product of a small and a low-rank matrix (LyCORIS).

``dW = C kron (B A)`` (Edalati et al., 2022, KronA; LyCORIS) covers a full-size update with very
few parameters. It folds into the weights, so a run merges into a plain model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from tunelab.methods import peft_adapters
from tunelab.methods.options import Problems
from tunelab.methods.registry import Method, register_method


@dataclass
class LokrOptions:
    """LoKr options (see ``peft.LoKrConfig``); ``r``, ``alpha`` and ``decompose_factor`` default to
    peft's (8, 8, -1: the most square split), the target modules to LoRA's choice for BERT."""

    r: int = 8
    alpha: float = 8
    rank_dropout: float = 0.0
    module_dropout: float = 0.0
    decompose_factor: int = -1
    decompose_both: bool = False
    target_modules: list[str] | str = field(default_factory=lambda: ["query", "value"])
    train_pooler: bool = True

    def __post_init__(self) -> None:
        problems = Problems("lokr")
        problems.positive_int("r", self.r, 8)
        problems.positive("alpha", self.alpha, 8)
        problems.probability("rank_dropout", self.rank_dropout)
        problems.probability("module_dropout", self.module_dropout)
        if (
            isinstance(self.decompose_factor, bool)
            or not isinstance(self.decompose_factor, int)
            or (self.decompose_factor != -1 and self.decompose_factor < 1)
        ):
            problems.add(f"decompose_factor={self.decompose_factor!r} (use -1 or a positive integer, e.g. 4)")
        self.target_modules = problems.modules(
            "target_modules", self.target_modules, "[query, value] or all-linear"
        )
        problems.raise_if_any()


def apply(model: nn.Module, cfg: LokrOptions) -> nn.Module:
    from peft import LoKrConfig

    config = LoKrConfig(
        r=cfg.r,
        alpha=cfg.alpha,
        rank_dropout=cfg.rank_dropout,
        module_dropout=cfg.module_dropout,
        decompose_factor=cfg.decompose_factor,
        decompose_both=cfg.decompose_both,
        target_modules=cfg.target_modules,
        modules_to_save=peft_adapters.head_modules(model, cfg.train_pooler),
    )
    return peft_adapters.wrap(model, config, "lokr")


register_method(
    Method(
        name="lokr",
        config_cls=LokrOptions,
        apply=apply,
        save=peft_adapters.save,
        load=peft_adapters.loader_for("lokr", peft_type="LOKR"),
        merge=peft_adapters.merge,
        sharing=peft_adapters.sharing_for("lokr", peft_type="LOKR", mixed=False),
        default_learning_rate=1e-3,  # as LoRA's: LyCORIS trains LoKr with LoRA-like rates
        stores_base=False,
        description="low-rank Kronecker product adapters (peft, LyCORIS)",
    )
)
