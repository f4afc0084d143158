"""What an export is asked to do, checked before any model is loaded, and where it writes.

Checking the options first means a typo (``--format onxx``, ``--prune 30``) costs a fraction of a
second instead of a model load and an export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import ConfigError

FORMATS = ("onnx", "onnx-int8", "torch-int8")
PRUNE_METHODS = ("magnitude", "heads", "ffn", "structured")
STRUCTURED = ("heads", "ffn", "structured")  # the methods that cut whole rows and columns
DEFAULT_MAX_DROP = 1.0
MAX_RECOVER_EPOCHS = 1e6  # exclusive, as train.epochs (recovery trains with the run's train config)


@dataclass(frozen=True)
class ExportOptions:
    """One export: the artifact format, optional pruning, and the parity threshold.

    Attributes:
        format: ``onnx`` (fp32 ONNX Runtime), ``onnx-int8`` (ONNX Runtime, int8 weights) or
            ``torch-int8`` (PyTorch dynamic int8).
        prune: fraction of weights (``magnitude``) or attention heads (``heads``) to remove, in
            (0, 1); None for no pruning.
        prune_method: ``magnitude`` (unstructured, global L1 over the encoder's linear weights);
            structured, with a least-squares refit of each layer: ``heads`` (whole attention
            heads), ``ffn`` (feed-forward neurons) or ``structured`` (both, the same fraction of
            each).
        recover_epochs: after structured pruning, fine-tune the pruned model this many epochs on
            the run's training texts to match the unpruned model (0: no recovery).
        max_drop: the largest accepted fall of the headline metric, in percentage points.
    """

    format: str = "onnx-int8"
    prune: float | None = None
    prune_method: str = "magnitude"
    recover_epochs: float = 0.0
    max_drop: float = DEFAULT_MAX_DROP

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"format {self.format!r} is unknown; use one of {', '.join(FORMATS)}")
        if self.prune_method not in PRUNE_METHODS:
            raise ConfigError(
                f"prune method {self.prune_method!r} is unknown; use one of {', '.join(PRUNE_METHODS)}"
            )
        if self.prune is not None and (not _is_number(self.prune) or not 0 < self.prune < 1):
            raise ConfigError(f"prune {self.prune!r}: give a fraction between 0 and 1, e.g. 0.3 for 30%")
        # below train.epochs' own bound: 1e6 passed here and failed as "train.epochs=1000000.0" after
        # the model was loaded and pruned
        if not (_is_number(self.recover_epochs) and 0 <= self.recover_epochs < MAX_RECOVER_EPOCHS):
            raise ConfigError(  # NaN fails too
                f"recover epochs {self.recover_epochs!r}: give --recover-epochs a number of epochs from 0 "
                f"to below {MAX_RECOVER_EPOCHS:.0f}, e.g. 2"
            )
        if self.prune is None and self.prune_method != "magnitude":
            raise ConfigError(
                f"prune method {self.prune_method!r} prunes nothing by itself; add --prune FRACTION"
            )
        if self.recover_epochs and (self.prune is None or self.prune_method not in STRUCTURED):
            raise ConfigError(
                "recover epochs: recovery fine-tunes a structurally pruned model; add --prune FRACTION "
                f"--prune-method {'|'.join(STRUCTURED)}"
            )
        if not _is_number(self.max_drop):
            raise ConfigError(f"max drop {self.max_drop!r}: give a number of percentage points, e.g. 1.0")
        if not math.isfinite(self.max_drop) or self.max_drop < 0:
            raise ConfigError(
                f"max drop {self.max_drop!r}: give a finite number of percentage points, 0 or more"
            )

    @property
    def suffix(self) -> str:
        """``-onnx-int8``, ``-torch-int8-pruned30``, ``-onnx-int8-structured50``: the folder name's tail."""
        if self.prune is None:
            return f"-{self.format}"
        kind = "pruned" if self.prune_method == "magnitude" else self.prune_method
        return f"-{self.format}-{kind}{round(100 * self.prune)}"

    @property
    def fractions(self) -> dict[str, float]:
        """What a structured method removes: ``{"heads": f, "ffn": f}`` (empty for magnitude)."""
        if self.prune is None or self.prune_method not in STRUCTURED:
            return {}
        parts = ("heads", "ffn") if self.prune_method == "structured" else (self.prune_method,)
        return {part: float(self.prune) for part in parts}

    def default_output(self, source: Path) -> Path:
        """``runs/<run>-<format>[-pruned30]`` beside the source run."""
        return source.with_name(source.name + self.suffix)


def _is_number(value: object) -> bool:
    """An int or float, not a bool (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
