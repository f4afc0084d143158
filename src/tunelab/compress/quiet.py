"""Silence the exporters' chatter (torchvision notices, deprecation and shape-naming warnings).

``torch.onnx``, ``onnxscript``, ONNX Runtime's quantiser and ``torch.ao`` each print warnings that
say nothing actionable to a tunelab user; real failures still raise. Only the calling thread is
quietened (see ``tunelab.quiet``): loading a ``torch-int8`` artifact in a running server leaves the
other requests' logs and warnings alone.
"""

from __future__ import annotations

from tunelab.quiet import quiet

__all__ = ["quiet"]
