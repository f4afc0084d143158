"""Where ``POST /v1/models/{name}/versions`` may load from: folders under the allowed roots only.

The endpoint takes a path from the request body. Unbounded, an admin key (or whoever holds a
leaked one) could make the server open any folder it can read: ``../../home/x``, ``/etc``, or a
symlink planted in the runs folder that points elsewhere. So a path is resolved the way the
filesystem will resolve it (``os.path.realpath``: ``..`` and every symlink followed) and must
lie under one of the roots (``tunelab serve --model-root DIR``, repeatable; default ``runs``).
Symlinks inside the folder are checked the same way, and the loader gets the resolved path, so
what was checked is what is loaded. Models named on the command line are the operator's choice
and are not confined.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.runs.links import links_in

DEFAULT_ROOT = "runs"


class ModelPathForbiddenError(TunelabError):
    """A load path outside the allowed roots (HTTP 403)."""

    code = "path_not_allowed"


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def confine(path: str, roots: Sequence[Path]) -> Path:
    """The real path of ``path`` if it and every symlink inside it stay under ``roots``.

    Raises:
        ModelPathForbiddenError: one line naming the path and the allowed roots.
    """
    real_roots = [_real(root) for root in roots]
    allowed = ", ".join(str(root) for root in real_roots)
    hint = f"models load only from {allowed}; start the server with --model-root DIR to allow another"
    real = _real(path)
    if not _inside(real, real_roots):
        raise ModelPathForbiddenError(f"path {path!r} is outside the allowed model roots: {hint}")
    for link in links_in(real):
        if not _inside(_real(link), real_roots):
            raise ModelPathForbiddenError(
                f"path {path!r}: {link.relative_to(real)} links outside the allowed model roots: {hint}"
            )
    return real


__all__ = ["DEFAULT_ROOT", "ModelPathForbiddenError", "confine"]
