"""Logging for ``tunelab serve``: one stream handler for tunelab, uvicorn and the access log.

With ``mask_logs`` (the default) a ``MaskingFilter`` sits on that handler, so anything logged,
whoever logs it (tracebacks included), has e-mails, phone, card and account numbers masked.
Texts themselves are logged only at debug level.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(*, level: str = "info", mask: bool = True) -> logging.Handler:
    """Route tunelab's and uvicorn's loggers through one handler on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    numeric = getattr(logging, level.upper(), logging.INFO)
    for name in ("tunelab", "uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # tunelab.serve.access logs each request
    if mask:
        from tunelab.serve.masking import install_masking

        install_masking([handler])
    return handler


__all__ = ["configure_logging"]
