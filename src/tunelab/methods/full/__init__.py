"""Full fine-tuning: every weight of the encoder and the head is trained and saved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tunelab.methods.registry import Method, register_method


@dataclass
class FullConfig:
    """Full fine-tuning has no options of its own; the recipe lives in ``train``."""


def apply(model: nn.Module, cfg: FullConfig) -> nn.Module:
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def save(model: nn.Module, folder: Path) -> None:
    model.save_pretrained(folder)  # transformers writes model.safetensors + config.json


def load(base: nn.Module, folder: Path) -> nn.Module:
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    missing, unexpected = base.load_state_dict(state, strict=False)
    # position_ids buffers and tied weights may be absent from the file; real weights may not.
    real_missing = [k for k in missing if not k.endswith("position_ids")]
    if real_missing or unexpected:
        raise ValueError(f"weights in {folder} do not fit the model: missing {real_missing[:3]}, unexpected {unexpected[:3]}")
    return base


register_method(
    Method(
        name="full",
        config_cls=FullConfig,
        apply=apply,
        save=save,
        load=load,
        default_learning_rate=1e-4,
        stores_base=True,
        description="train all weights (best accuracy, largest artifact)",
    )
)
