"""Zero-shot classification: labels described in words, no training (``tunelab zeroshot``,
``tunelab predict --zero-shot``).

Importing this package registers the ``zeroshot`` artifact format with the predictor, the way
``tunelab.ensembling`` registers ``ensemble``: a zero-shot run folder then evaluates, predicts and
serves like any run.
"""

from __future__ import annotations

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

register_format(FORMAT, load_zero_shot)

__all__ = [
    "ZeroShotBackend",
    "ZeroShotResult",
    "ZeroShotSpec",
    "describe_label",
    "read_label_descriptions",
    "zero_shot",
    "zero_shot_predictor",
]
