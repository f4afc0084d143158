"""An app's ``--out`` folder checked before any work (apps use the public API only, so not with
``tunelab.runs.folder``, whose check for runs this repeats)."""

from __future__ import annotations

from pathlib import Path

from tunelab.errors import ConfigError


def check_out_parents(target: Path) -> None:
    """Refuse ``--out`` under a file: it failed only when the folder was written, after the whole
    build ("unexpected FileExistsError")."""
    for parent in target.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"--out {target}: {parent} is a file, not a folder; give another --out")
