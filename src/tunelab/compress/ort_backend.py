"""The ONNX Runtime backend for ``onnx`` and ``onnx-int8`` artifacts (``weights/model.onnx``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunelab.data.encoding import Encoded
from tunelab.errors import RunError
from tunelab.inference.backends import LoadContext
from tunelab.inference.forward import batched_outputs

MODEL_FILE = "model.onnx"


class OnnxBackend:
    """Logits from an ONNX Runtime session on the CPU.

    ORT gets as many threads as torch uses (``torch.get_num_threads()``, which ``train.threads``
    and ``torch.set_num_threads`` set), so both backends compete on equal terms and one knob
    limits either. A session is safe to call from several threads (serve's workers).
    """

    def __init__(self, path: Path, *, name: str, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: ORT warns about unused initializers
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise RunError(
                f"{path}: ONNX Runtime cannot load this model ({first}); export the run again"
            ) from None
        self.name = name
        self.inputs = [i.name for i in self.session.get_inputs()]

    def logits(self, enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
        """Logits (N, num_labels) in input order; batches are length-grouped like the torch backend."""
        return batched_outputs(self._run, enc, batch_size=batch_size)

    def _run(self, **batch: torch.Tensor) -> torch.Tensor:
        ids = batch["input_ids"]
        feeds: dict[str, Any] = {}
        for name in self.inputs:
            tensor = batch.get(name)
            feeds[name] = (tensor if tensor is not None else torch.zeros_like(ids)).numpy()
        return torch.from_numpy(self.session.run(["logits"], feeds)[0])


def load_onnx(ctx: LoadContext) -> OnnxBackend:
    """Format loader for ``onnx`` and ``onnx-int8`` (registered in ``tunelab.compress``)."""
    path = ctx.run.weights / MODEL_FILE
    if not path.is_file():
        raise RunError(f"{ctx.run.root}: weights/{MODEL_FILE} is missing; export the run again")
    return OnnxBackend(path, name=ctx.summary.get("format", "onnx"))
