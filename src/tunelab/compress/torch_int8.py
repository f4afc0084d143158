"""``torch-int8``: PyTorch dynamic int8 quantisation of every linear layer, stored as safetensors.

``torch.ao.quantization.quantize_dynamic`` keeps its weights in packed C++ objects that only
``torch.save`` (pickle) can write, and tunelab loads weights from safetensors only. So each
quantised layer is stored as its int8 weight, per-output-channel scales and zero points, and fp32
bias. Embedding tables (half of MiniLM's weights) are stored as int8 rows with one scale each and
turned back into floats on load: PyTorch has no fast int8 lookup worth using, but the file is then
int8-sized throughout (59 MB -> 23 MB for MiniLM). LayerNorm and the like stay fp32. Loading
rebuilds the architecture from the encoder config (and the pruned head counts and FFN sizes),
quantises it, and puts the stored integers back; nothing is unpickled.

Layout of ``weights/``: ``config.json`` (encoder), ``model.safetensors``, ``int8.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tunelab.atomic import save_safetensors
from tunelab.data.encoding import Encoded
from tunelab.errors import RunError, first_line
from tunelab.inference.backends import LoadContext
from tunelab.inference.forward import predict_logits
from tunelab.quiet import quiet

LAYOUT_FILE = "int8.json"
WEIGHTS_FILE = "model.safetensors"
SETTINGS = {"method": "torch.ao.quantization.quantize_dynamic", "dtype": "qint8", "scheme": "per_channel"}


def _quantize(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    spec = {nn.Linear: per_channel_dynamic_qconfig}
    with quiet():
        return quantize_dynamic(model.eval(), spec, dtype=torch.qint8, inplace=inplace)


def _quantized_linears(model: nn.Module) -> dict[str, nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {name: m for name, m in model.named_modules() if isinstance(m, DynamicLinear)}


def save_torch_int8(model: nn.Module, folder: Path, *, shape: dict[str, Any] | None) -> dict[str, Any]:
    """Quantise ``model`` (a tunelab classifier) and write it to ``folder`` as described above."""
    quantized = _quantize(model)  # a copy: ``model`` keeps its float weights
    layers = _quantized_linears(quantized)
    tables = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key in tables:
            tensors.update(_int8_rows(key, value.detach()))
        elif key.rsplit(".", 1)[0] not in layers:
            tensors[key] = value.detach().contiguous()
    for name, layer in layers.items():
        weight, bias = layer.weight(), layer.bias()
        tensors[f"{name}.int8_weight"] = weight.int_repr().contiguous()
        tensors[f"{name}.int8_scales"] = weight.q_per_channel_scales().contiguous()
        tensors[f"{name}.int8_zero_points"] = weight.q_per_channel_zero_points().contiguous()
        if bias is not None:
            tensors[f"{name}.int8_bias"] = bias.detach().contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(tensors, folder / WEIGHTS_FILE)
    model.config.to_json_file(str(folder / "config.json"))  # the classifier's, labels included
    layout = {
        **SETTINGS,
        "pooling": model.pooling,
        "num_labels": model.num_labels,
        "heads_per_layer": (shape or {}).get("heads_per_layer"),
        "ffn_per_layer": (shape or {}).get("ffn_per_layer"),
        "layers": sorted(layers),
    }
    (folder / LAYOUT_FILE).write_text(json.dumps(layout, indent=2) + "\n", encoding="utf-8")
    return {**SETTINGS, "quantized_layers": len(layers), "int8_embedding_tables": len(tables)}


def _int8_rows(key: str, table: torch.Tensor) -> dict[str, torch.Tensor]:
    """Symmetric int8 per row (V, H): the error is at most half a step, max|row| / 254."""
    scales = (table.abs().amax(dim=1) / 127).clamp(min=1e-12)  # (V,)
    rows = torch.round(table / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return {f"{key}.int8_rows": rows.contiguous(), f"{key}.int8_row_scales": scales.float().contiguous()}


def load_torch_int8(folder: Path) -> nn.Module:
    """Rebuild the int8 model written by ``save_torch_int8`` (safetensors only, no pickle)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from tunelab.compress.structured import apply_shape
    from tunelab.models.classifier import (
        classifier_from_config,
        is_classifier_config,
        legacy_key,
        load_failure,
    )

    if not (folder / LAYOUT_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise RunError(f"{folder}: {LAYOUT_FILE} or {WEIGHTS_FILE} is missing; export the run again")
    try:
        layout = json.loads((folder / LAYOUT_FILE).read_text(encoding="utf-8"))
        pooling, num_labels, _ = layout["pooling"], layout["num_labels"], layout["layers"]
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not the layout save_torch_int8 writes
        raise RunError(
            f"{folder / LAYOUT_FILE}: cannot read ({first_line(exc)}); export the run again"
        ) from None
    try:  # missing or damaged: was "unexpected ValueError/OSError" from transformers
        # trust_remote_code=False: a config.json naming code of its own (auto_map) is refused, no prompt
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        where = folder / "config.json"
        raise RunError(f"{where}: cannot read ({load_failure(exc)}); export the run again") from None
    model = classifier_from_config(config, pooling=pooling, num_labels=num_labels)
    try:
        apply_shape(model, layout)  # the pruned head counts and FFN sizes, if any
    except RunError as exc:
        raise RunError(f"{folder / LAYOUT_FILE}: cannot read ({exc}); export the run again") from None
    try:
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except Exception as exc:  # safetensors raises its own SafetensorError on a damaged file
        raise RunError(
            f"{folder / WEIGHTS_FILE}: cannot read ({first_line(exc)}); export the run again"
        ) from None
    if not is_classifier_config(config):  # exported before classifiers were transformers models
        tensors = {legacy_key(model, k): v for k, v in tensors.items()}
        layout["layers"] = [legacy_key(model, name) for name in layout["layers"]]
    # Float parts go into the float model; the linear layers' weights come from the int8 tensors.
    floats = {k: v for k, v in tensors.items() if ".int8_" not in k}
    for key in [k for k in tensors if k.endswith(".int8_rows")]:
        table = key.removesuffix(".int8_rows")
        floats[table] = tensors[key].float() * tensors[f"{table}.int8_row_scales"][:, None]
    missing, unexpected = model.load_state_dict(floats, strict=False)
    replaced = {f"{name}.{p}" for name in layout["layers"] for p in ("weight", "bias")}
    quantized = _quantize(model, inplace=True)
    layers = _quantized_linears(quantized)
    if unexpected or set(missing) - replaced or sorted(layers) != sorted(layout["layers"]):
        raise RunError(f"{folder}: int8 weights do not fit the model; export the run again")
    with quiet():
        for name, layer in layers.items():
            weight = torch._make_per_channel_quantized_tensor(
                tensors[f"{name}.int8_weight"],
                tensors[f"{name}.int8_scales"],
                tensors[f"{name}.int8_zero_points"],
                0,
            )
            layer.set_weight_bias(weight, tensors.get(f"{name}.int8_bias"))
    return quantized.eval()


class TorchInt8Backend:
    """PyTorch eager on the int8 model (fbgemm/x86 int8 kernels for every linear layer)."""

    name = "torch-int8"

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def logits(self, enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
        return predict_logits(self.model, enc, batch_size=batch_size)


def load_backend(ctx: LoadContext) -> TorchInt8Backend:
    """Format loader for ``torch-int8`` (registered in ``tunelab.compress``)."""
    return TorchInt8Backend(load_torch_int8(ctx.run.weights))


def check_supported(model: nn.Module) -> None:
    """Fail before any work where the model is not a plain pooled sentence classifier.

    The int8 artifact is rebuilt as tunelab's sentence classifier (its pooling and label count are
    all the layout records), so a per-token model would load as the wrong architecture, and a
    prompt, prefix or adapter beside the base would be lost.

    Raises:
        RunError: naming the formats that do take the model.
    """
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise RunError(
            "--format torch-int8 rebuilds the plain classifier from its config, and this run's model "
            f"({type(model).__name__}) keeps weights outside it (its method cannot merge); "
            "use --format onnx-int8 (int8) or onnx"
        )
    if getattr(model, "pooling", None) is None:
        raise RunError(
            "--format torch-int8 is for sentence classification only (this run's model is a "
            f"{type(model).__name__}); use --format onnx-int8 (int8) or onnx"
        )
