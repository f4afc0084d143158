"""Silence the exporters' chatter (torchvision notices, deprecation and shape-naming warnings).

``torch.onnx``, ``onnxscript``, ONNX Runtime's quantiser and ``torch.ao`` each print warnings that
say nothing actionable to a tunelab user; real failures still raise.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet() -> Iterator[None]:
    """Hide warnings and log records below ERROR for the duration of the block."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
