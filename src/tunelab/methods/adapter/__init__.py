"""Bottleneck adapters (Houlsby and Pfeiffer), written here: a small MLP inside every encoder layer.

Houlsby et al., 2019, "Parameter-Efficient Transfer Learning for NLP": after the attention block's
and the feed-forward block's output projections, before the residual sum and LayerNorm, a
bottleneck ``h + up(act(down(h)))`` (H -> H / reduction_factor -> H) starts as the identity and
learns the task; the encoder stays frozen. Pfeiffer et al., 2021 ("AdapterFusion") keep only the
feed-forward one: half the parameters and the added latency, about the same accuracy.

Why written here: peft has no bottleneck adapters, and AdapterHub's ``adapters`` library, which
has, pins transformers 4.x (tunelab runs on transformers 5). The insertion points are BERT-family
layer outputs (``BertSelfOutput`` / ``BertOutput`` and their RoBERTa, XLM-R, ELECTRA twins: a
``dense`` projection, ``dropout`` and ``LayerNorm``); see ``bottleneck.py``.

Adapters are non-linear, so they cannot be folded into the base weights: ``tunelab merge`` refuses,
and inference runs them as trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tunelab.methods import wrapped_model
from tunelab.methods.adapter.bottleneck import ACTIVATIONS, KINDS, AdapterModel, checked_blocks
from tunelab.methods.options import Problems
from tunelab.methods.registry import Method, ModelLoader, register_method


@dataclass
class AdapterOptions:
    """Bottleneck adapter options.

    ``kind``: ``houlsby`` (two adapters per layer, the issue's anchor: within 0.4 GLUE points of
    full fine-tuning with 3.6% of the parameters) or ``pfeiffer`` (one, after the feed-forward
    block). ``reduction_factor`` 16 and the activations (``auto``: swish for Houlsby, ReLU for
    Pfeiffer) are AdapterHub's defaults for both configurations; with MiniLM's hidden size 384 a
    Houlsby adapter set is 1.0% of the model's weights. ``train_layer_norm`` also trains the
    encoder's LayerNorms (both of every layer's, with ``pfeiffer`` too), as Houlsby et al. did.
    """

    kind: str = "houlsby"
    reduction_factor: int = 16
    activation: str = "auto"
    dropout: float = 0.0
    train_layer_norm: bool = False
    train_pooler: bool = True

    def __post_init__(self) -> None:
        problems = Problems("adapter")
        problems.choice("kind", self.kind, KINDS)
        problems.positive_int("reduction_factor", self.reduction_factor, 16)
        problems.choice("activation", self.activation, ("auto", *ACTIVATIONS))
        problems.probability("dropout", self.dropout)
        problems.raise_if_any()

    def check_model(self, model: nn.Module) -> None:
        """What ``AdapterModel`` checks of ``model``, for ``tunelab validate`` (on its skeleton)."""
        checked_blocks(model, self.kind)


def apply(model: nn.Module, cfg: AdapterOptions) -> nn.Module:
    wrapped_model.train_only_head(model, cfg.train_pooler)
    return AdapterModel(model, cfg)


def load(folder: Path, loader: ModelLoader) -> nn.Module:
    """Rebuild the run's adapters on its base model (``wrapped_model.load``), as they were trained.

    Only a Pfeiffer run with ``train_layer_norm`` can be a legacy one, so only then are the saved
    tensor names read, from the file's header alone, when ``wrapped_model.load`` has already read
    it whole; every other adapter run is read once. (One read for all would need
    ``wrapped_model.load`` to hand ``apply`` the names it holds.)
    """

    def apply_as_saved(model: nn.Module, cfg: AdapterOptions) -> nn.Module:
        wrapped = apply(model, cfg)
        if cfg.kind != "pfeiffer" or not cfg.train_layer_norm:
            return wrapped
        saved = _saved_names(folder)
        if saved is not None:
            # Runs saved before Pfeiffer's train_layer_norm trained the attention LayerNorms too
            # hold none of them: those stay as the base has them, as they were when trained.
            for name, param in wrapped.named_parameters():
                if param.requires_grad and "LayerNorm" in name and name not in saved:
                    param.requires_grad_(False)
        return wrapped

    return wrapped_model.load(
        folder, loader, method="adapter", options_cls=AdapterOptions, apply=apply_as_saved
    )


def _saved_names(folder: Path) -> set[str] | None:
    """The tensor names in the run's adapter weights (its header only); None where unreadable, which
    ``wrapped_model.load``, having read the file just before, leaves to its own checks."""
    from safetensors import safe_open

    try:
        with safe_open(str(folder / wrapped_model.ADAPTER_WEIGHTS), framework="pt") as weights:
            return set(weights.keys())
    except Exception:  # a damaged or missing file: wrapped_model.load refuses it in one line
        return None


register_method(
    Method(
        name="adapter",
        config_cls=AdapterOptions,
        apply=apply,
        save=wrapped_model.save,
        load=load,
        # Houlsby et al. swept 3e-5..3e-3 for BERT; the frozen encoder and the identity start take
        # LoRA-like rates (AdapterHub's examples use 1e-4 on BERT-base over more epochs).
        default_learning_rate=1e-3,
        stores_base=False,
        description="Houlsby / Pfeiffer bottleneck adapters in every layer (ours: peft has none)",
        cannot_merge="bottleneck adapters add a non-linear block (down-projection, activation, "
        "up-projection) inside every layer, which no change of the base weights can reproduce",
    )
)
