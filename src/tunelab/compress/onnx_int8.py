"""fp32 ONNX -> int8 weights with ONNX Runtime's dynamic quantisation.

Settings compared in one process on the BANKING77 MiniLM run (3,080 test texts, batch 32,
2 threads, AVX-512 VNNI CPU; fp32 accuracy 93.70):

- fused graph (``QAttention``), per-channel weights, no reduce_range: 93.44, fastest   <- chosen
- fused graph, per-tensor weights: 93.05 (-0.65 points), not consistently faster
- plain dynamo graph (no fusion), per-channel: 93.41, about half the speed of the fused one
- fused graph, per-channel, reduce_range (7-bit weights): 93.44, same speed
- session options (no spinning, EXTENDED optimisation, dynamic block base) and ``FastGelu``
  instead of ``BiasGelu``: no measurable gain

``benchmarks/export.py`` on that run: 6.1x PyTorch eager at batch 1 and 2.8x at batch 32 (median
of per-round ratios; 2.4-3.1x across runs on a shared 2-core machine), 23 MB instead of 91 MB.
At batch 32 the int8 matrix products are no longer the bottleneck: LayerNorm and GELU, which
int8 does not speed up, take about a third of the time.

On a CPU with AVX2 but no VNNI (2026-12-01, same run): 4.95x at batch 1 and 1.84x at batch 32,
93.54; there ``reduce_range`` (93.38) and per-tensor weights (91.49 with reduce_range) are worse
and QUInt8 weights slower, so the settings stay. Pruning heads and FFN neurons first
(``structured.py``, ``recover.py``) takes batch 32 to 2.90x (50%, 2 recovery epochs) or 3.83x
(60%, 4 epochs, -0.42 points).

Per-channel scales keep the accuracy within half a point; ``reduce_range`` only matters on CPUs
without VNNI (saturation in the 16-bit accumulation), and costs nothing here, so it stays off.
Activations are quantised on the fly per batch (uint8), which is why no calibration data is needed.
``DefaultTensorType`` tells the quantiser the type of tensors it cannot infer in a fused graph
(without it the quantiser fails on ORT contrib ops).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

from tunelab.quiet import quiet

SETTINGS: dict[str, Any] = {
    "method": "onnxruntime.quantization.quantize_dynamic",
    "weight_type": "QInt8",
    "activations": "uint8, dynamic per batch",
    "per_channel": True,
    "reduce_range": False,
}


def quantize_onnx(source: Path, target: Path) -> dict[str, Any]:
    """Write the int8 model for the fp32 model at ``source`` to ``target`` (one file)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with quiet():
            quantize_dynamic(
                source,
                target,
                weight_type=QuantType.QInt8,
                per_channel=SETTINGS["per_channel"],
                reduce_range=SETTINGS["reduce_range"],
                use_external_data_format=False,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    except Exception as exc:
        # The quantiser first writes a shape-inferred copy of the fp32 model beside it, in onnx's
        # C++ code, which does not report a full disk: the copy is cut short and reading it back
        # failed as "unexpected DecodeError: ... Wire format was corrupt" (protobuf's, caught by
        # any name: protobuf is no dependency of tunelab's own). With less room left than the
        # fp32 model takes, that is the full disk, said as every other write says it (the
        # export's output folder is named by the caller).
        # The cut-short copy is still there (the quantiser removes it only after reading it back):
        # without it, the failure is another one, whatever room is left.
        inferred = source.with_name(f"{source.stem}-inferred{source.suffix}")
        if (
            not isinstance(exc, OSError)
            and inferred.exists()
            and shutil.disk_usage(target.parent).free < source.stat().st_size
        ):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from exc
        raise
    return dict(SETTINGS)
