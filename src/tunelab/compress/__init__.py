"""Compress a run: merge adapters, prune, export to ONNX, quantise to int8; every export is parity-checked.

``merge(run)`` folds a run's adapter into its base and writes a plain run (its logits checked to
move by under 1e-4). ``export(run, format=...)`` writes an artifact folder with a run's layout, so
``tunelab.load``, ``evaluate``, ``predict`` and ``serve`` take it like a run. Importing this package
registers the artifact formats with the predictor (``tunelab.inference.backends``); ONNX Runtime and
the exporters are imported only when an artifact is written or loaded.

Example:
    >>> import tunelab  # doctest: +SKIP
    >>> result = tunelab.export("runs/banking77", format="onnx-int8")  # doctest: +SKIP
    >>> result.parity["after"]["accuracy"], result.parity["speedup"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from tunelab.compress.export import ExportResult, export
from tunelab.compress.merge import MergeResult, merge
from tunelab.compress.options import FORMATS, PRUNE_METHODS, ExportOptions
from tunelab.compress.parity import ParityError
from tunelab.inference.backends import LoadContext, register_format


def _load_onnx(ctx: LoadContext) -> Any:
    from tunelab.compress.ort_backend import load_onnx

    return load_onnx(ctx)


def _load_torch_int8(ctx: LoadContext) -> Any:
    from tunelab.compress.torch_int8 import load_backend

    return load_backend(ctx)


register_format("onnx", _load_onnx)
register_format("onnx-int8", _load_onnx)
register_format("torch-int8", _load_torch_int8)

__all__ = [
    "FORMATS",
    "PRUNE_METHODS",
    "ExportOptions",
    "ExportResult",
    "MergeResult",
    "ParityError",
    "export",
    "merge",
]
