"""tunelab: fine-tune a pre-trained transformer on labelled text, evaluate it, and predict.

The CLI (``tunelab train | eval | predict | export | runs``) is a thin layer over this API::

    import tunelab
    result = tunelab.train("configs/banking77.yaml", overrides=["method=lora"])
    predictor = tunelab.load(result.run_dir)
    predictor.predict("I still have not received my new card")
    predictor.predict(df["text"])                  # a DataFrame column -> a DataFrame of predictions
    tunelab.train(train=train_df, dev=dev_df)      # DataFrames (or datasets.Dataset) instead of files
    artifact = tunelab.export(result.run_dir, format="onnx-int8")  # parity-checked ONNX Runtime int8
    merged = tunelab.merge(result.run_dir)  # a LoRA-family adapter folded into its base: a plain run
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import TYPE_CHECKING, Any

# Hugging Face's fast tokenizers print a warning in every process forked after they encoded in
# parallel (and turn parallelism off there) unless this is set before the fork. A value the
# caller set is kept.
# (peft's is_gradient_checkpointing notice is hidden where peft wraps a model, in
# methods/peft_adapters.py: a process-wide filter here hid a program's own warnings of that text.)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# onnxruntime's import writes a persistent device id and a telemetry database (Microsoft's 1DS
# collector) under ~/.cache/Microsoft on every export, ONNX predict and serve, and warns in colour
# on each command where HOME is read-only; only this variable, read at import, stops it
# (onnxruntime.disable_telemetry_events() leaves the files). A value the caller set is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"

# Public name -> module that defines it. Imported on first use (PEP 562), so ``import tunelab`` and
# the light commands (``tunelab keys``, ``tunelab usage``) never load torch or transformers.
_EXPORTS = {
    "DataConfig": "tunelab.config",
    "EnsembleResult": "tunelab.ensembling",
    "ExportResult": "tunelab.compress",
    "MergeResult": "tunelab.compress",
    "MethodConfig": "tunelab.config",
    "ModelConfig": "tunelab.config",
    "Predictor": "tunelab.inference",
    "RunConfig": "tunelab.config",
    "SearchResult": "tunelab.search",
    "TrainConfig": "tunelab.config",
    "TrainResult": "tunelab.train",
    "TunelabError": "tunelab.errors",
    "check_writable": "tunelab.preflight",
    "embed": "tunelab.embeddings",
    "ensemble": "tunelab.ensembling",
    "evaluate": "tunelab.evaluate.on_run",
    "export": "tunelab.compress",
    "list_runs": "tunelab.runs",
    "load": "tunelab.inference",
    "load_encoder": "tunelab.embeddings",
    "merge": "tunelab.compress",
    "predict": "tunelab.inference",
    "predict_file": "tunelab.inference",
    "read_labelled": "tunelab.data.labelled",
    "search": "tunelab.search",
    "train": "tunelab.train",
    "validate_run": "tunelab.preflight",
    "zero_shot": "tunelab.zeroshot",
    "zero_shot_predictor": "tunelab.zeroshot",
}

__all__ = [
    "DataConfig",
    "EnsembleResult",
    "ExportResult",
    "MergeResult",
    "MethodConfig",
    "ModelConfig",
    "Predictor",
    "RunConfig",
    "SearchResult",
    "TrainConfig",
    "TrainResult",
    "TunelabError",
    "check_writable",
    "embed",
    "ensemble",
    "evaluate",
    "export",
    "list_runs",
    "load",
    "load_encoder",
    "merge",
    "predict",
    "predict_file",
    "read_labelled",
    "search",
    "train",
    "validate_run",
    "zero_shot",
    "zero_shot_predictor",
]

if TYPE_CHECKING:
    from tunelab.compress import ExportResult, MergeResult, export, merge
    from tunelab.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
    from tunelab.data.labelled import read_labelled
    from tunelab.embeddings import embed, load_encoder
    from tunelab.ensembling import EnsembleResult, ensemble
    from tunelab.errors import TunelabError
    from tunelab.evaluate.on_run import evaluate
    from tunelab.inference import Predictor, load, predict, predict_file
    from tunelab.preflight import validate_run
    from tunelab.runs import list_runs
    from tunelab.search import SearchResult, search
    from tunelab.train import TrainResult, train
    from tunelab.zeroshot import zero_shot, zero_shot_predictor


_SHADOWING = ("train", "evaluate", "search")  # functions named like a subpackage (see _Package)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tunelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SHADOWING:
        # ``import tunelab.evaluate.mistakes as m`` asks the function ``tunelab.evaluate`` for
        # ``mistakes``, and when it has no such attribute Python looks for the module
        # ``f"{function.__name__}.mistakes"`` in sys.modules: the full dotted name makes that find
        # the subpackage's module (the bare "evaluate" found nothing, an ImportError).
        value.__name__ = f"{__name__}.{name}"
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """The public API only (what tab completion offers): not the helpers and subpackages this module holds."""
    return sorted([*__all__, "__version__"])


class _Package(types.ModuleType):
    """``tunelab.train``, ``.evaluate`` and ``.search`` are functions sharing a subpackage's name.

    Importing a subpackage makes Python bind it on its parent (``tunelab.train = <module>``), which
    would hide the function once anything imported ``tunelab.train.trainer``; those bindings are
    dropped, so the name always means the function (``sys.modules`` still has the subpackage).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWING and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
