"""PyTorch classifier -> one self-contained ONNX file, fused for ONNX Runtime.

Why these choices (measured on the BANKING77 MiniLM run, 2 CPU threads):

- ``torch.onnx.export(dynamo=True)``: the legacy TorchScript exporter gives wrong logits (max
  difference 4-6) with transformers 5; the dynamo exporter matches eager to 2e-5.
- ``onnxscript``'s ``optimize_for_ort`` fuses the dynamo graph into ONNX Runtime's ``Attention``,
  ``SkipLayerNormalization`` and ``BiasGelu`` kernels (ORT's own ``optimizer.optimize_model``
  finds no attention in a dynamo graph): the fused fp32 graph ran 1.6x faster than the plain one
  at batch 32 in the same process, and only a fused graph gets int8 attention (``QAttention``).
- The fused attention reads the additive padding bias; it is switched to the raw attention mask
  (``mask_index``), which is what lets the int8 quantiser turn it into ``QAttention`` (its
  quantiser drops an attention bias). Only done for encoders, whose bias is padding only.
- The result is checked against eager on a padded sample batch; if the fused graph disagrees,
  the plain exported graph is kept instead, so an unusual architecture costs speed, not accuracy.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tunelab.errors import RunError
from tunelab.quiet import quiet

log = logging.getLogger(__name__)
OPSET = 18
MAX_BYTES = 1_900_000_000  # protobuf's 2 GB limit, for the one-file layout
FOLD_LIMIT = 1 << 26  # fold constant subgraphs up to 64M elements (the fused QKV weight concat)


class _Logits(nn.Module):
    """Positional tensors in, logits out: what the exporter traces."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).logits


def export_onnx(model: nn.Module, sample: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """Write ``model`` as one ONNX file at ``path`` and say what was fused.

    Args:
        model: the classifier (eval mode; adapters merged).
        sample: a padded batch (``input_ids``, ``attention_mask``, maybe ``token_type_ids``), 2+ rows.
        path: the ``.onnx`` file to write (initializers inside it, no external data).

    Returns:
        ``{"exporter", "opset", "inputs", "fusions", "attention_mask_index"}`` for the export report.
    """
    import onnx_ir as ir

    model = model.eval()
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if size > MAX_BYTES:
        raise RunError(f"model has {size / 1e9:.1f} GB of weights; the one-file ONNX layout holds up to 2 GB")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    args = tuple(sample[n] for n in names)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    with quiet(), torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            _Logits(model),
            args,
            None,
            input_names=names,
            output_names=["logits"],
            opset_version=OPSET,
            dynamo=True,
            optimize=True,
            verbose=False,
            dynamic_shapes=tuple({0: batch, 1: seq} for _ in names),
        )
        plain = ir.serde.serialize_model(program.model)
        fused, info = _fuse(program.model)
    expected = model(**sample).logits.detach().numpy() if fused is not None else None
    chosen = plain
    if fused is not None and _agrees(fused, sample, names, expected):
        chosen = fused
    else:
        info = {
            "fusions": {},
            "attention_mask_index": 0,
            "fallback": "fused graph disagreed; kept the plain one",
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    import onnx

    onnx.save_model(chosen, str(path), save_as_external_data=False)
    return {
        "exporter": f"torch.onnx dynamo (torch {torch.__version__})",
        "opset": OPSET,
        "inputs": names,
        **info,
    }


def _fuse(model_ir: Any) -> tuple[Any, dict[str, Any]]:
    """Fused, folded ModelProto with the attention mask as ``mask_index`` (None if fusion fails)."""
    import onnx_ir as ir
    import onnxscript.optimizer
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    try:
        fused_ir, counts = optimize_for_ort(model_ir)
        proto = ir.serde.serialize_model(fused_ir)
        switched = use_mask_index(proto)
        proto = onnxscript.optimizer.optimize(
            proto, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT
        )
    except Exception as exc:  # an architecture the fusion rules do not know: keep the plain graph
        log.info("ONNX fusion skipped: %s", exc)
        return None, {}
    return proto, {"fusions": {k: v for k, v in counts.items() if v}, "attention_mask_index": switched}


def use_mask_index(proto: Any) -> int:
    """Feed each fused ``Attention`` the raw 0/1 mask instead of an additive bias built from it.

    Returns:
        How many attention nodes were switched (0 when the graph has no fused attention).
    """
    from onnx import TensorProto, helper

    graph = proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    switched = 0
    for node in graph.node:
        if node.op_type != "Attention" or len(node.input) < 6 or not node.input[5]:
            continue
        if "attention_mask" not in _graph_inputs_behind(node.input[5], producers):
            continue
        sizes = [list(a.ints) for a in node.attribute if a.name == "qkv_hidden_sizes"]
        if sizes and len(set(sizes[0])) != 1:
            continue  # QAttention needs equal q/k/v sizes; leave such a node as it is
        kept = [a for a in node.attribute if a.name != "qkv_hidden_sizes"]
        del node.attribute[:]
        node.attribute.extend(kept)
        inputs = [*node.input[:3], "attention_mask_int32"]
        del node.input[:]
        node.input.extend(inputs)
        switched += 1
    if switched:
        cast = helper.make_node("Cast", ["attention_mask"], ["attention_mask_int32"], to=TensorProto.INT32)
        graph.node.insert(0, cast)
    return switched


def _graph_inputs_behind(name: str, producers: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    stack = [name]
    while stack:
        value = stack.pop()
        if value in seen:
            continue
        seen.add(value)
        if value in producers:
            stack.extend(i for i in producers[value].input if i)
    return seen


def _agrees(proto: Any, sample: dict[str, torch.Tensor], names: list[str], expected: np.ndarray) -> bool:
    """The fused graph's logits on the padded sample match eager's (fp32 round-off only)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {n: sample[n].numpy() for n in names})[0]
    except Exception as exc:
        log.info("fused ONNX graph does not run: %s", exc)
        return False
    return bool(np.allclose(got, expected, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(expected).max()))))
