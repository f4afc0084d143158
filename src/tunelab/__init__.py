"""tunelab: fine-tune a pre-trained transformer on labelled text, evaluate it, and predict.

The CLI (``tunelab train | eval | predict | export | runs``) is a thin layer over this API::

    import tunelab
    result = tunelab.train("configs/banking77.yaml", overrides=["method=lora"])
    predictor = tunelab.load(result.run_dir)
    predictor.predict("I still have not received my new card")
    artifact = tunelab.export(result.run_dir, format="onnx-int8")  # parity-checked ONNX Runtime int8
"""

from __future__ import annotations

import os
import warnings

# No hub at run time: bundled weights and local folders never need it, and hub ids go through
# tunelab.models.resolve, which explains the offline failure itself.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

from tunelab.compress import ExportResult, export  # noqa: E402
from tunelab.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from tunelab.errors import TunelabError  # noqa: E402
from tunelab.evaluate.on_run import evaluate  # noqa: E402
from tunelab.predict import Predictor, load, predict_file  # noqa: E402
from tunelab.runs import list_runs  # noqa: E402
from tunelab.train import TrainResult, train  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DataConfig",
    "ExportResult",
    "MethodConfig",
    "ModelConfig",
    "Predictor",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "TunelabError",
    "evaluate",
    "export",
    "list_runs",
    "load",
    "predict_file",
    "train",
]
