"""LoRA through peft: low-rank adapters on the attention projections, the head trained in full.

The classification head (and, with [CLS] pooling, BERT's pooler) are peft ``modules_to_save``, so they are
trained and saved with the adapter; the base weights are referenced by model name, not copied.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from tunelab.errors import ConfigError
from tunelab.methods.registry import Method, ModelLoader, register_method

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


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
        problems = []
        if not isinstance(self.r, int) or self.r < 1:
            problems.append(f"r={self.r!r} (use a positive integer such as 8)")
        if not isinstance(self.alpha, int | float) or self.alpha <= 0:
            problems.append(f"alpha={self.alpha!r} (use a positive number such as 16)")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout={self.dropout!r} (use [0, 1))")
        if not self.target_modules:
            problems.append("target_modules is empty (e.g. [query, value] or all-linear)")
        if problems:
            raise ConfigError("method lora: " + "; ".join(problems))


def _peft_config(model: nn.Module, cfg: LoraOptions):
    from peft import LoraConfig

    modules_to_save = ["classifier"]
    # BERT's pooler only matters when classifying from [CLS]; with mean pooling it is unused.
    uses_pooler = getattr(model, "pooling", "cls") == "cls"
    if cfg.train_pooler and uses_pooler and any(n.endswith("pooler.dense") for n, _ in model.named_modules()):
        modules_to_save.append("pooler")
    return LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        modules_to_save=modules_to_save,
        bias="none",
    )


def apply(model: nn.Module, cfg: LoraOptions) -> nn.Module:
    from peft import get_peft_model

    try:
        return get_peft_model(model, _peft_config(model, cfg))
    except ValueError as exc:  # peft reports target modules that match nothing this way
        raise ConfigError(f"method lora: {exc}".splitlines()[0]) from None


def save(model: nn.Module, folder: Path) -> None:
    model.save_pretrained(folder)  # adapter_model.safetensors + adapter_config.json only


def load(folder: Path, loader: ModelLoader) -> nn.Module:
    from peft import PeftModel

    base = loader.base()
    with _renamed_if_legacy(folder, base) as adapter:
        model = PeftModel.from_pretrained(base, adapter)
    # Merging folds the low-rank update into the base weights: inference costs what the base does.
    return model.merge_and_unload()


@contextlib.contextmanager
def _renamed_if_legacy(folder: Path, base: nn.Module) -> Iterator[Path]:
    """``folder``, or for an adapter trained before classifiers were transformers models, a
    temporary copy with its keys renamed: its encoder was ``encoder``, BERT's stock classifier
    calls it ``bert`` (every mean-pooled run keeps ``encoder`` and needs nothing)."""
    from safetensors.torch import load_file, save_file

    from tunelab.models.classifier import legacy_key

    path, prefix = folder / ADAPTER_WEIGHTS, "base_model.model."
    weights = {}
    if getattr(base, "base_model_prefix", "encoder") != "encoder" and path.is_file():
        weights = load_file(str(path))
    if not any(k.startswith(prefix + "encoder.") for k in weights):
        yield folder
        return
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy2(folder / ADAPTER_CONFIG, Path(tmp) / ADAPTER_CONFIG)
        renamed = {
            prefix + legacy_key(base, k.removeprefix(prefix)) if k.startswith(prefix) else k: v
            for k, v in weights.items()
        }
        save_file(renamed, str(Path(tmp) / ADAPTER_WEIGHTS))
        yield Path(tmp)


register_method(
    Method(
        name="lora",
        config_cls=LoraOptions,
        apply=apply,
        save=save,
        load=load,
        default_learning_rate=1e-3,
        stores_base=False,
        description="low-rank adapters (peft); small artifact, base referenced by name",
    )
)
