"""LoRA through peft: low-rank adapters on the attention projections, the head trained in full.

The classification head (and, with [CLS] pooling, BERT's pooler) are peft ``modules_to_save``, so they are
trained and saved with the adapter; the base weights are referenced by model name, not copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from tunelab.methods import peft_adapters
from tunelab.methods.options import Problems
from tunelab.methods.registry import Method, register_method


@dataclass
class LoraOptions:
    """LoRA options (see ``peft.LoraConfig``).

    ``target_modules`` names the linear layers that get adapters; ``["query", "value"]`` is the
    LoRA paper's choice for BERT, ``"all-linear"`` adapts every linear layer but the head.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: list[str] | str = field(default_factory=lambda: ["query", "value"])
    train_pooler: bool = True

    def __post_init__(self) -> None:
        problems = Problems("lora")
        problems.positive_int("r", self.r, 8)
        problems.positive("alpha", self.alpha, 16)
        problems.probability("dropout", self.dropout)
        self.target_modules = problems.modules(
            "target_modules", self.target_modules, "[query, value] or all-linear"
        )
        problems.raise_if_any()


def apply(model: nn.Module, cfg: LoraOptions) -> nn.Module:
    from peft import LoraConfig

    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        modules_to_save=peft_adapters.head_modules(model, cfg.train_pooler),
        bias="none",
    )
    return peft_adapters.wrap(model, config, "lora")


register_method(
    Method(
        name="lora",
        config_cls=LoraOptions,
        apply=apply,
        save=peft_adapters.save,
        load=peft_adapters.loader_for("lora", peft_type="LORA"),
        merge=peft_adapters.merge,
        sharing=peft_adapters.sharing_for("lora", peft_type="LORA", mixed=True),
        default_learning_rate=1e-3,
        stores_base=False,
        description="low-rank adapters (peft); small artifact, base referenced by name",
    )
)
