"""Reading an app's YAML file (a monitor.yaml, a rec.yaml) into plain data, every failure one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tunelab.errors import ConfigError


def read_yaml_config(
    path: str | Path, what: str, help_command: str, *, parse: Callable[[str, str], Any] | None = None
) -> Any:
    """The parsed YAML of ``path``.

    Raises:
        ConfigError: a missing file (pointing at ``help_command``), invalid YAML (with its line),
            or a file that is not UTF-8.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found (see `{help_command}`)")
    try:
        text = p.read_text(encoding="utf-8")
        return yaml.safe_load(text) if parse is None else parse(text, str(p))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8; save the {what} as UTF-8") from None
