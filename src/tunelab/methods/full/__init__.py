"""Full fine-tuning: every weight of the encoder and the head is trained and saved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tunelab.methods.registry import Method, ModelLoader, register_method


@dataclass
class FullConfig:
    """Full fine-tuning's one option; the rest of the recipe lives in ``train``.

    ``freeze_word_embeddings``: keep the token embedding matrix as pre-trained. It is half of
    MiniLM's weights (30,522 x 384 of 22.7M), yet a batch only reads a few hundred of its rows:
    training it costs a dense gradient, its clipping and an AdamW update of all 11.7M values every
    step (profiled in README, "Training speed"). Position and token-type embeddings still train.
    """

    freeze_word_embeddings: bool = False


def apply(model: nn.Module, cfg: FullConfig) -> nn.Module:
    for param in model.parameters():
        param.requires_grad_(True)
    if cfg.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    return model


def save(model: nn.Module, folder: Path) -> None:
    from tunelab.models.classifier import save_classifier

    save_classifier(model, folder)  # a save_pretrained folder: config.json + model.safetensors


def load(folder: Path, loader: ModelLoader) -> nn.Module:
    # The folder holds the whole fine-tuned model: the base weights are not needed.
    return loader.whole(folder)


register_method(
    Method(
        name="full",
        config_cls=FullConfig,
        apply=apply,
        save=save,
        load=load,
        default_learning_rate=5e-5,
        stores_base=True,
        description="train all weights (best accuracy, largest artifact)",
        cannot_merge="it stores the whole model already (a plain run): there is no adapter to fold in",
    )
)
