"""Serving: the HTTP API over a trained run, with API keys, rate limits, quotas and metering.

Names are imported on first use (``from tunelab.serve import AccessControl``), so importing the
package does not pull in the web framework or a database driver.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_EXPORTS = {
    "AccessControl": "tunelab.serve.access",
    "AccessError": "tunelab.serve.access",
    "Caller": "tunelab.serve.access",
    "MicroBatcher": "tunelab.serve.batcher",
    "ModelRegistry": "tunelab.serve.registry",
    "Quota": "tunelab.serve.limits",
    "Rate": "tunelab.serve.limits",
    "ServeSettings": "tunelab.serve.settings",
    "ServedModel": "tunelab.serve.app",
    "create_app": "tunelab.serve.app",
    "mask_pii": "tunelab.serve.masking",
    "open_store": "tunelab.serve.store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tunelab.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
