"""Reading an app's YAML file (a monitor.yaml, a rec.yaml) into plain data, every failure one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tunelab.atomic import not_a_file
from tunelab.errors import ConfigError
from tunelab.yaml_names import DuplicateKeyError, load_strict_yaml


def read_yaml_config(
    path: str | Path, what: str, help_command: str, *, parse: Callable[[str, str], Any] | None = None
) -> Any:
    """The parsed YAML of ``path``, read as run files are (``load_strict_yaml``, unless ``parse``):
    a key given twice is refused, and ``no``, ``on`` or ``1:30`` stay text.

    Raises:
        ConfigError: a missing file (pointing at ``help_command``), invalid YAML or a key given
            twice (with its line), or a file that is not UTF-8.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {not_a_file(p, what) or f'{what} not found (see `{help_command}`)'}")
    try:
        text = p.read_text(encoding="utf-8")
        return load_strict_yaml(text) if parse is None else parse(text, str(p))
    except DuplicateKeyError as exc:  # YAML itself keeps the last, dropping the first
        raise ConfigError(f"{p} line {exc.line}: {exc.advice()}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8; save the {what} as UTF-8") from None
