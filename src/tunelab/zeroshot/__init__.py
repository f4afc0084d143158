"""Zero-shot classification: labels described in words, no training (``tunelab zeroshot``,
``tunelab predict --zero-shot``).

Importing this package registers the ``zeroshot`` artifact format with the predictor, the way
``tunelab.ensembling`` registers ``ensemble``: a zero-shot run folder then evaluates, predicts and
serves like any run.
"""

from __future__ import annotations

from typing import Any

from tunelab.compress.export import register_composite_export
from tunelab.errors import RunError
from tunelab.inference.backends import register_format
from tunelab.zeroshot.backend import (
    FORMAT,
    ZeroShotBackend,
    ZeroShotSpec,
    load_zero_shot,
    zero_shot_predictor,
)
from tunelab.zeroshot.build import ZeroShotResult, zero_shot
from tunelab.zeroshot.labels import describe_label, read_label_descriptions


def _no_export(source: Any, summary: dict[str, Any], *_: Any, **__: Any) -> dict[str, Any]:
    """``tunelab export`` of a zero-shot run: nothing was trained, so there is nothing to export."""
    raise RunError(
        f"{source.root}: a zero-shot run has no trained weights to export (it scores with "
        f"{summary.get('model')} as it is); eval, predict and serve take the folder itself"
    )


register_format(FORMAT, load_zero_shot)
register_composite_export(FORMAT, _no_export)

__all__ = [
    "ZeroShotBackend",
    "ZeroShotResult",
    "ZeroShotSpec",
    "describe_label",
    "read_label_descriptions",
    "zero_shot",
    "zero_shot_predictor",
]
