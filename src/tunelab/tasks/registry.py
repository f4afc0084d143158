"""The registry of tasks, by the ``data.task`` name that selects each one.

Built-in tasks register themselves when their folder is imported; ``get_task`` imports them on
first use, so importing the registry stays cheap and free of import cycles.
"""

from __future__ import annotations

import importlib

from tunelab.errors import ConfigError
from tunelab.tasks.base import Task

_REGISTRY: dict[str, Task] = {}
_BUILT_IN = ("tunelab.tasks.classification", "tunelab.tasks.token_classification")


def register_task(task: Task) -> Task:
    """Add a task under its name; a duplicate name is a programming error."""
    if task.name in _REGISTRY:
        raise ValueError(f"task {task.name!r} is already registered")
    _REGISTRY[task.name] = task
    return task


def _load_built_in() -> None:
    for module in _BUILT_IN:
        importlib.import_module(module)


def get_task(name: str) -> Task:
    """Look a task up by name; an unknown name fails listing the known ones."""
    if name not in _REGISTRY:
        _load_built_in()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(available_tasks())
        raise ConfigError(f"task {name!r} is not known; available tasks: {known}") from None


def available_tasks() -> list[str]:
    """Every registered task name, built-in ones included."""
    _load_built_in()
    return sorted(_REGISTRY)
